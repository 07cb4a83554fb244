// Classic 2-D toy distributions (moons, circles, swiss roll, eight Gaussians, checkerboard,
// pinwheel), each with `scale` and `shift` and, where natural, labels.
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("toy_data")

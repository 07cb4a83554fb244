// The time-conditioned MLP of toy-data diffusion experiments (optionally class-conditioned).
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("mlp")

// The time-conditioned networks of toy-data diffusion experiments (optionally class-conditioned):
// the MLP (`mlp`: time_mlp) and the residual MLP (`residual_mlp`: residual_mlp).
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("mlp")

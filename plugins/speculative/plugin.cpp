// Speculative sampling of diffusion models (De Bortoli, Galashov, Gretton & Doucet 2025): a
// draft proposes L reverse steps, the target checks them in one batched call, and the
// reflection maximal coupling keeps the output exactly the target sampler's.
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("speculative")

// Flow matching: the conditional paths `linear` (rectified flow / I-CFM, with Lipman et al.'s
// sigma_min) and `cosine` (flow_paths), the conditional flow matching loss `cfm` with
// independent or minibatch-OT couplings (cfm_loss, coupling), and `reflow` (reflow_loss), which
// retrains on the couplings of a trained flow. Sampling is the shared `ode` sampler: with the
// `velocity` preconditioning its field alpha' x0_hat + sigma' eps_hat is the network's output.
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("flow_matching")

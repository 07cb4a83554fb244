#pragma once
// Couplings of data with source draws for conditional flow matching (Tong et al. 2024,
// section 3.2 and Algorithm 1 vs. Algorithm 2 "OT-CFM"):
//
//   independent   q(x0, z) = q(x0) q(z): the draws are used as they come (I-CFM; Lipman et al.).
//   minibatch_ot  the batch's pairs are the exact optimal transport plan between the data rows
//                 and the source rows under squared Euclidean cost (uniform weights on equal
//                 sizes, so the plan is a permutation: Birkhoff-von Neumann), solved with the
//                 core's exact assignment solver. Each data row and each source draw is used once,
//                 so both marginals are exactly the batch's.
//
// The OT batch: the plan spans the whole batch of a training step (all shards; the loss plans in
// its prepare_batch, before the loop shards the batch), or `ot_batch` rows, a multiple k of
// train.batch_size: the loop then draws k batches at once, the loss plans them together and the
// loop feeds them to k consecutive steps (loss.hpp, batches_per_plan).
#include <cstddef>
#include <string>
#include <vector>

#include <diffusion/tensor/tensor.hpp>

namespace diffusion::flow_matching {

enum class CouplingType { independent, minibatch_ot };

struct Coupling {
  CouplingType type = CouplingType::independent;
  std::size_t ot_batch = 0;  ///< rows per OT plan; 0: one training batch (train.batch_size)
};

/// "independent" or "minibatch_ot".
CouplingType parse_coupling(const std::string& name);

/// Reorders the rows of z (N, ...) so that row i of z is the partner of row i of x0 (N, ...) in
/// the exact OT plan: the permutation p minimising sum_i |x0_i - z_p(i)|^2.
void pair_by_optimal_transport(const Tensor& x0, Tensor& z);

}  // namespace diffusion::flow_matching

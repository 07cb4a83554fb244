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
// The OT batch: the plan is computed on blocks of `ot_batch` consecutive rows of what the loss
// sees (0: all of it in one block). The loss sees one shard of the training batch per call
// (run/data_parallel.hpp), so an OT batch is at most a shard; a larger one needs the step-level
// hook described in the plugin's report (the loop drawing the OT batch and cutting it).
#include <cstddef>
#include <string>
#include <vector>

#include <diffusion/tensor/tensor.hpp>

namespace diffusion::flow_matching {

enum class CouplingType { independent, minibatch_ot };

struct Coupling {
  CouplingType type = CouplingType::independent;
  std::size_t ot_batch = 0;  ///< rows per OT plan; 0: the whole batch the loss sees
};

/// "independent" or "minibatch_ot".
CouplingType parse_coupling(const std::string& name);

/// Reorders the rows of z (N, ...) so that row i of z is paired with row i of x0 (N, ...):
/// unchanged for independent, the exact OT assignment within each block of ot_batch rows for
/// minibatch_ot (the last block may be shorter).
void couple(const Tensor& x0, Tensor& z, const Coupling& coupling);

/// The optimal permutation of one block: p[i] is the row of z paired with row i of x0, for rows
/// [begin, begin + m) of both (exposed for tests).
std::vector<std::size_t> ot_permutation(const Tensor& x0, const Tensor& z, std::size_t begin, std::size_t m);

}  // namespace diffusion::flow_matching

#pragma once
// What a batch is conditioned on, carried as one value from the data to the network
// (k-diffusion's `cond`): class labels, a null mask (rows whose condition is dropped, for
// classifier-free guidance), and named tensors (an image to follow, a text embedding). Every
// part has one row per sample, checked when it is set, so a Condition is sliced, gathered and
// joined together with the batch it belongs to (shards, particles, resampling).
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

class Condition {
 public:
  /// No condition (an unconditional batch of any size).
  Condition() = default;
  /// Class labels only.
  static Condition from_labels(std::vector<int> labels);

  /// True when nothing is set.
  bool empty() const { return rows_ == 0 && !has_labels_ && !has_null_mask_ && tensors_.empty(); }
  /// Rows of every part (0 when empty).
  std::size_t rows() const { return rows_; }

  bool has_labels() const { return has_labels_; }
  /// The class of each row; Error if there are none.
  const std::vector<int>& labels() const;
  /// Set the labels; Error if their count differs from the rows of the parts already set.
  void set_labels(std::vector<int> labels);

  bool has_null_mask() const { return has_null_mask_; }
  /// 1 for a row whose condition is dropped (the network sees its null label / null input);
  /// Error if no mask is set.
  const std::vector<std::uint8_t>& null_mask() const;
  /// Whether row i's condition is dropped (false without a mask).
  bool is_null(std::size_t i) const { return has_null_mask_ && null_mask_[i] != 0; }
  void set_null_mask(std::vector<std::uint8_t> mask);

  /// Named tensors, each (rows, ...).
  bool has(const std::string& name) const;
  const Tensor& tensor(const std::string& name) const;
  void set(const std::string& name, Tensor value);
  std::vector<std::string> names() const;

  /// Throws Error "<where>: the condition has 200 rows (labels) but the batch has 50" unless
  /// the condition is empty or has exactly n rows. Callers check once, where a batch and its
  /// condition meet (the loss, the denoiser), so a mismatch never reaches a network op.
  void check_rows(std::size_t n, const std::string& where) const;

  /// Rows [begin, end) of every part.
  Condition slice(std::size_t begin, std::size_t end) const;
  /// The given rows of every part, in order (repeats allowed: resampling particles).
  Condition select(const std::vector<std::size_t>& rows) const;
  /// The rows of a followed by those of b (the same parts on both sides), e.g. the conditional
  /// and unconditional halves of one classifier-free guidance evaluation.
  static Condition concat(const Condition& a, const Condition& b);

 private:
  void adopt_rows(std::size_t n, const char* part);

  std::size_t rows_ = 0;
  bool has_labels_ = false, has_null_mask_ = false;
  std::vector<int> labels_;
  std::vector<std::uint8_t> null_mask_;
  std::vector<std::pair<std::string, Tensor>> tensors_;
};

}  // namespace diffusion

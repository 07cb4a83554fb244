#include "diffusion/model/condition.hpp"

#include <algorithm>

namespace diffusion {
namespace {

std::size_t rows_of(const Tensor& t) { return t.dimension() == 0 ? 1 : t.shape()[0]; }

Tensor gather_rows(const Tensor& t, const std::vector<std::size_t>& rows) {
  Shape s = shape_of(t);
  const std::size_t per = s[0] ? t.size() / s[0] : 0;
  s[0] = rows.size();
  Tensor out = Tensor::from_shape(s);
  for (std::size_t i = 0; i < rows.size(); ++i)
    std::copy(t.data() + rows[i] * per, t.data() + (rows[i] + 1) * per, out.data() + i * per);
  return out;
}

Tensor join_rows(const Tensor& a, const Tensor& b) {
  Shape s = shape_of(a);
  if (shape_of(b).size() != s.size() || !std::equal(s.begin() + 1, s.end(), shape_of(b).begin() + 1))
    throw Error("Condition::concat: tensors " + shape_str(a) + " and " + shape_str(b) + " do not join by rows");
  s[0] += b.shape()[0];
  Tensor out = Tensor::from_shape(s);
  std::copy(b.begin(), b.end(), std::copy(a.begin(), a.end(), out.begin()));
  return out;
}

std::vector<std::size_t> range(std::size_t begin, std::size_t end) {
  std::vector<std::size_t> r(end - begin);
  for (std::size_t i = 0; i < r.size(); ++i) r[i] = begin + i;
  return r;
}

template <class T>
std::vector<T> pick(const std::vector<T>& v, const std::vector<std::size_t>& rows) {
  std::vector<T> out(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) out[i] = v[rows[i]];
  return out;
}

}  // namespace

Condition Condition::from_labels(std::vector<int> labels) {
  Condition c;
  c.set_labels(std::move(labels));
  return c;
}

void Condition::adopt_rows(std::size_t n, const char* part) {
  const bool first = !has_labels_ && !has_null_mask_ && tensors_.empty();
  if (!first && n != rows_)
    throw Error(std::string("condition: ") + part + " has " + std::to_string(n) + " rows but the condition has " +
                std::to_string(rows_));
  rows_ = n;
}

const std::vector<int>& Condition::labels() const {
  if (!has_labels_) throw Error("condition: no class labels (is the data set labelled?)");
  return labels_;
}

void Condition::set_labels(std::vector<int> labels) {
  adopt_rows(labels.size(), "labels");
  labels_ = std::move(labels);
  has_labels_ = true;
}

const std::vector<std::uint8_t>& Condition::null_mask() const {
  if (!has_null_mask_) throw Error("condition: no null mask");
  return null_mask_;
}

void Condition::set_null_mask(std::vector<std::uint8_t> mask) {
  adopt_rows(mask.size(), "null mask");
  null_mask_ = std::move(mask);
  has_null_mask_ = true;
}

bool Condition::has(const std::string& name) const {
  return std::any_of(tensors_.begin(), tensors_.end(), [&](const auto& e) { return e.first == name; });
}

const Tensor& Condition::tensor(const std::string& name) const {
  for (const auto& e : tensors_)
    if (e.first == name) return e.second;
  throw Error("condition: no tensor '" + name + "'");
}

void Condition::set(const std::string& name, Tensor value) {
  adopt_rows(rows_of(value), ("tensor '" + name + "'").c_str());
  for (auto& e : tensors_)
    if (e.first == name) {
      e.second = std::move(value);
      return;
    }
  tensors_.emplace_back(name, std::move(value));
}

std::vector<std::string> Condition::names() const {
  std::vector<std::string> out;
  for (const auto& e : tensors_) out.push_back(e.first);
  return out;
}

void Condition::check_rows(std::size_t n, const std::string& where) const {
  if (empty() || rows_ == n) return;
  const char* part = has_labels_ ? "labels" : has_null_mask_ ? "null mask" : "tensors";
  throw Error(where + ": the condition has " + std::to_string(rows_) + " rows (" + part + ") but the batch has " +
              std::to_string(n));
}

Condition Condition::slice(std::size_t begin, std::size_t end) const {
  if (begin > end || end > rows_)
    throw Error("condition: rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " +
                std::to_string(rows_));
  return select(range(begin, end));
}

Condition Condition::select(const std::vector<std::size_t>& rows) const {
  for (const std::size_t r : rows)
    if (r >= rows_) throw Error("condition: row " + std::to_string(r) + " of " + std::to_string(rows_));
  Condition c;
  if (has_labels_) c.set_labels(pick(labels_, rows));
  if (has_null_mask_) c.set_null_mask(pick(null_mask_, rows));
  for (const auto& e : tensors_) c.set(e.first, gather_rows(e.second, rows));
  return c;
}

Condition Condition::concat(const Condition& a, const Condition& b) {
  if (a.has_labels_ != b.has_labels_ || a.has_null_mask_ != b.has_null_mask_ || a.names() != b.names())
    throw Error("Condition::concat: the two conditions have different parts");
  Condition c;
  if (a.has_labels_) {
    std::vector<int> l = a.labels_;
    l.insert(l.end(), b.labels_.begin(), b.labels_.end());
    c.set_labels(std::move(l));
  }
  if (a.has_null_mask_) {
    std::vector<std::uint8_t> m = a.null_mask_;
    m.insert(m.end(), b.null_mask_.begin(), b.null_mask_.end());
    c.set_null_mask(std::move(m));
  }
  for (std::size_t i = 0; i < a.tensors_.size(); ++i)
    c.set(a.tensors_[i].first, join_rows(a.tensors_[i].second, b.tensors_[i].second));
  return c;
}

}  // namespace diffusion

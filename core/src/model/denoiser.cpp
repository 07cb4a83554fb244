// The network read through a preconditioning, and the wrappers every sampler can use.
#include "diffusion/model/denoiser.hpp"

#include <algorithm>

#include "diffusion/tensor/rows.hpp"

namespace diffusion {

Times same_time(std::size_t n, double t) { return Times(n, t); }

void Denoiser::predict(const Tensor& x, double t, const Condition& c, Prediction& out) const {
  predict(x, same_time(x.dimension() ? x.shape()[0] : 0, t), c, out);
}

Prediction Denoiser::predict(const Tensor& x, double t, const Condition& c) const {
  Prediction p;
  predict(x, t, c, p);
  return p;
}

namespace {

void check_batch(const Tensor& x, const Times& t, const Condition& c) {
  if (x.dimension() == 0) throw Error("denoiser: x must be a batch (N, ...), got a scalar");
  const std::size_t n = x.shape()[0];
  if (t.size() != n)
    throw Error("denoiser: " + std::to_string(t.size()) + " times for a batch of " + std::to_string(n));
  c.check_rows(n, "denoiser");
}

void reuse(Tensor& t, const Tensor& like) {
  if (t.shape() != like.shape()) t = Tensor::from_shape(shape_of(like));
}

/// A per-row column (N, 1, ...) of rank `rank`, to broadcast against a batch.
Tensor column(const std::vector<double>& v, std::size_t rank) {
  Shape s(rank, 1);
  s[0] = v.size();
  Tensor c = Tensor::from_shape(s);
  for (std::size_t i = 0; i < v.size(); ++i) c.data()[i] = static_cast<float>(v[i]);
  return c;
}

}  // namespace

NetworkDenoiser::NetworkDenoiser(std::shared_ptr<Network> network, std::shared_ptr<const Path> path,
                                 std::shared_ptr<const Preconditioning> preconditioning)
    : net_(std::move(network)), path_(std::move(path)), pre_(std::move(preconditioning)) {
  if (!net_ || !path_ || !pre_) throw Error("NetworkDenoiser: network, path and preconditioning are required");
}

NetworkDenoiser::TimeRuns NetworkDenoiser::prepare(const Times& t, Tensor& c_noise) const {
  c_noise = Tensor::from_shape({t.size()});
  TimeRuns runs;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (i > 0 && t[i] == t[i - 1]) {
      c_noise(i) = c_noise(i - 1);
      runs.back().end = i + 1;
      continue;
    }
    const Scalings k = pre_->scalings(*path_, t[i]);
    c_noise(i) = static_cast<float>(k.c_noise);
    runs.push_back({i, i + 1, k.c_in, pre_->readout(*path_, t[i])});
  }
  return runs;
}

namespace {

/// out = (r.x * x + r.f * y) / r.div over `count` values.
void read_out(const LinearReadout& r, const float* x, const float* y, float* out, std::size_t count) {
  for (std::size_t j = 0; j < count; ++j) out[j] = static_cast<float>((r.x * x[j] + r.f * y[j]) / r.div);
}

}  // namespace

void NetworkDenoiser::predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const {
  check_batch(x, t, c);
  NoGradScope no_grad;
  const std::size_t n = x.shape()[0], per = x.size() / std::max<std::size_t>(n, 1);
  Tensor c_noise;
  const TimeRuns runs = prepare(t, c_noise);
  Tensor input = x;
  for (const TimeRun& run : runs)
    if (run.c_in != 1.0)
      for (std::size_t j = run.begin * per; j < run.end * per; ++j) input.data()[j] *= static_cast<float>(run.c_in);
  const Var f = net_->forward(Var(std::move(input)), c_noise, c);
  const Tensor& y = f.value();
  if (y.size() != x.size())
    throw Error("denoiser: network output " + shape_str(y) + " does not match its input " + shape_str(x));
  reuse(out.x0, x);
  reuse(out.eps, x);
  for (const TimeRun& run : runs) {
    const std::size_t at = run.begin * per, count = (run.end - run.begin) * per;
    read_out(run.readout.x0, x.data() + at, y.data() + at, out.x0.data() + at, count);
    read_out(run.readout.eps, x.data() + at, y.data() + at, out.eps.data() + at, count);
  }
}

PredictionVar NetworkDenoiser::predict_var(const Var& x, const Times& t, const Condition& c) const {
  check_batch(x.value(), t, c);
  const std::size_t n = x.value().shape()[0], rank = x.value().dimension();
  Tensor c_noise;
  const TimeRuns runs = prepare(t, c_noise);
  // Per-row columns of the coefficients, to broadcast against the batch on the graph.
  std::vector<double> cin(n), x0x(n), x0f(n), ex(n), ef(n);
  bool unit = true;
  for (const TimeRun& run : runs) {
    unit = unit && run.c_in == 1.0;
    const Readout& r = run.readout;
    for (std::size_t i = run.begin; i < run.end; ++i) {
      cin[i] = static_cast<float>(run.c_in);
      x0x[i] = r.x0.x / r.x0.div, x0f[i] = r.x0.f / r.x0.div;
      ex[i] = r.eps.x / r.eps.div, ef[i] = r.eps.f / r.eps.div;
    }
  }
  // Differentiable in x only: the weights enter as constants, so a backward pass computes no
  // weight gradients (half its work) and leaves the weights' grads untouched.
  const ConstantScope weights(net_->parameters());
  const Var input = unit ? x : x * Var(column(cin, rank));
  const Var f = net_->forward(input, c_noise, c);
  if (f.size() != x.size())
    throw Error("denoiser: network output " + shape_str(f.value()) + " does not match its input " + shape_str(x.value()));
  return {x * Var(column(x0x, rank)) + f * Var(column(x0f, rank)),
          x * Var(column(ex, rank)) + f * Var(column(ef, rank))};
}

DenoiserWrapper::DenoiserWrapper(std::shared_ptr<const Denoiser> inner) : inner_(std::move(inner)) {
  if (!inner_) throw Error("denoiser wrapper: no denoiser to wrap");
}

void DenoiserWrapper::predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const {
  inner_->predict(x, t, c, out);
}

PredictionVar DenoiserWrapper::predict_var(const Var& x, const Times& t, const Condition& c) const {
  return inner_->predict_var(x, t, c);
}

void CountingDenoiser::predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const {
  ++nfe_;
  DenoiserWrapper::predict(x, t, c, out);
}

PredictionVar CountingDenoiser::predict_var(const Var& x, const Times& t, const Condition& c) const {
  ++nfe_;
  return DenoiserWrapper::predict_var(x, t, c);
}

ChunkedDenoiser::ChunkedDenoiser(std::shared_ptr<const Denoiser> inner, std::size_t rows)
    : DenoiserWrapper(std::move(inner)), rows_(rows) {
  if (rows_ == 0) throw Error("chunked denoiser: at least one row per evaluation");
}

void ChunkedDenoiser::predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const {
  const std::size_t n = x.dimension() ? x.shape()[0] : 0;
  if (n <= rows_) return DenoiserWrapper::predict(x, t, c, out);
  if (t.size() != n) throw Error("chunked denoiser: " + std::to_string(t.size()) + " times for " + std::to_string(n) + " rows");
  c.check_rows(n, "chunked denoiser");
  const Shape shape = shape_of(x);
  if (shape_of(out.x0) != shape) out.x0 = Tensor::from_shape(shape);
  if (shape_of(out.eps) != shape) out.eps = Tensor::from_shape(shape);
  Prediction part;
  for (std::size_t begin = 0; begin < n; begin += rows_) {
    const std::size_t end = std::min(n, begin + rows_);
    const Times ts(t.begin() + static_cast<std::ptrdiff_t>(begin), t.begin() + static_cast<std::ptrdiff_t>(end));
    DenoiserWrapper::predict(row_range(x, begin, end), ts, c.empty() ? c : c.slice(begin, end), part);
    set_row_range(out.x0, begin, part.x0);
    set_row_range(out.eps, begin, part.eps);
  }
}

ClassifierFreeGuidance::ClassifierFreeGuidance(std::shared_ptr<const Denoiser> inner, double w)
    : DenoiserWrapper(std::move(inner)), w_(w) {}

namespace {

/// The condition of the conditional half (its own mask, or none dropped) followed by the
/// unconditional half (every row dropped).
Condition guided_condition(const Condition& c, std::size_t n) {
  Condition cond = c, null = c;
  if (!c.has_null_mask()) cond.set_null_mask(std::vector<std::uint8_t>(n, 0));
  null.set_null_mask(std::vector<std::uint8_t>(n, 1));
  return Condition::concat(cond, null);
}

Times twice(const Times& t) {
  Times t2(t);
  t2.insert(t2.end(), t.begin(), t.end());
  return t2;
}

}  // namespace

void ClassifierFreeGuidance::predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const {
  check_batch(x, t, c);
  const std::size_t n = x.shape()[0];
  Shape s2 = shape_of(x);
  s2[0] = 2 * n;
  Tensor x2 = Tensor::from_shape(s2);
  std::copy(x.begin(), x.end(), std::copy(x.begin(), x.end(), x2.begin()));
  Prediction both;
  inner().predict(x2, twice(t), guided_condition(c, n), both);
  reuse(out.x0, x);
  reuse(out.eps, x);
  // Both outputs are linear in F at a fixed x, so guiding F guides both alike.
  const auto a = static_cast<float>(1.0 + w_), b = static_cast<float>(w_);
  for (std::size_t j = 0, m = x.size(); j < m; ++j) {
    out.x0.data()[j] = a * both.x0.data()[j] - b * both.x0.data()[m + j];
    out.eps.data()[j] = a * both.eps.data()[j] - b * both.eps.data()[m + j];
  }
}

PredictionVar ClassifierFreeGuidance::predict_var(const Var& x, const Times& t, const Condition& c) const {
  check_batch(x.value(), t, c);
  const std::size_t n = x.value().shape()[0];
  const PredictionVar both = inner().predict_var(concat({x, x}, 0), twice(t), guided_condition(c, n));
  const auto a = static_cast<float>(1.0 + w_), b = static_cast<float>(w_);
  const auto half = [&](const Var& v, std::size_t k) { return slice(v, 0, k * n, (k + 1) * n); };
  return {half(both.x0, 0) * a - half(both.x0, 1) * b, half(both.eps, 0) * a - half(both.eps, 1) * b};
}

}  // namespace diffusion

namespace diffusion {

ClassifierGuidance::ClassifierGuidance(std::shared_ptr<const Denoiser> inner,
                                       std::shared_ptr<const NoisyClassifier> classifier, double scale)
    : DenoiserWrapper(std::move(inner)), classifier_(std::move(classifier)), scale_(scale) {
  if (!classifier_) throw Error("classifier guidance: no classifier");
}

void ClassifierGuidance::predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const {
  check_batch(x, t, c);
  if (!c.has_labels()) throw Error("classifier guidance: the condition has no class labels to guide towards");
  inner().predict(x, t, c, out);
  if (scale_ == 0.0) return;
  ++nfe_;
  const Tensor grad = classifier_->grad_log_prob(x, t, c);
  if (grad.shape() != x.shape())
    throw Error("classifier guidance: the classifier's gradient " + shape_str(grad) + " is not shaped like x " +
                shape_str(x));
  const std::size_t n = x.shape()[0], per = x.size() / n;
  for (std::size_t i = 0; i < n; ++i) {
    if (c.is_null(i)) continue;
    // Eq. 14: eps - s sigma grad; x0 read off it on the path.
    const double a = path().alpha(t[i]), s = path().sigma(t[i]);
    const auto de = static_cast<float>(-scale_ * s), dx = static_cast<float>(scale_ * s * s / a);
    for (std::size_t j = i * per; j < (i + 1) * per; ++j) {
      out.eps.data()[j] += de * grad.data()[j];
      out.x0.data()[j] += dx * grad.data()[j];
    }
  }
}

PredictionVar ClassifierGuidance::predict_var(const Var&, const Times&, const Condition&) const {
  throw Error(
      "classifier guidance has no differentiable prediction (its gradient in x would need the classifier's second "
      "derivatives); use it with samplers that only call predict");
}

}  // namespace diffusion

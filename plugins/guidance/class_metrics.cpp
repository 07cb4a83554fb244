// Metrics of class-conditional samples: each sample comes with the class it was asked for and
// each reference row with the class it was drawn from (Metric::compute_labelled).
//
//   class_fraction  the fraction of samples that fall in the requested class (component): a
//                   sample is in the class whose reference mean is nearest (`classify:
//                   nearest_mean`, the Bayes rule for equally weighted isotropic components of
//                   one spread, as the eight Gaussians), or the class of its nearest reference
//                   row (`nearest_neighbour`, any class shape). Figures class_<k>: the fraction
//                   for the samples asked for class k. Higher is better; the floor (the data
//                   themselves) is the classifier's own accuracy.
//   class_w2        exact W2 per class, between the samples asked for class k and the reference
//                   rows of class k (the first min of the two counts of each); the value is the
//                   mean over the classes, figures class_<k> and n_class_<k>.
#include <algorithm>
#include <limits>
#include <string>

#include <diffusion/metrics/metrics.hpp>
#include <diffusion/plugin.hpp>

namespace diffusion::guidance {
namespace {

/// Rows of (N, ...) as points of D values.
std::size_t point_size(const Tensor& x) { return x.shape()[0] ? x.size() / x.shape()[0] : 0; }

void check_labels(const Tensor& x, const std::vector<int>& labels, const char* what) {
  if (x.dimension() == 0 || labels.size() != x.shape()[0])
    throw Error(std::string("class metrics: ") + std::to_string(labels.size()) + " labels for " + what + " " +
                shape_str(x));
  for (const int l : labels)
    if (l < 0) throw Error(std::string("class metrics: a negative label among the ") + what);
}

int class_count(const std::vector<int>& a, const std::vector<int>& b) {
  int k = 0;
  for (const int l : a) k = std::max(k, l + 1);
  for (const int l : b) k = std::max(k, l + 1);
  return k;
}

/// The rows of x whose label is k, in order, at most `limit` of them.
Tensor rows_of_class(const Tensor& x, const std::vector<int>& labels, int k, std::size_t limit) {
  const std::size_t d = point_size(x);
  std::vector<std::size_t> rows;
  for (std::size_t i = 0; i < labels.size() && rows.size() < limit; ++i)
    if (labels[i] == k) rows.push_back(i);
  Shape s = shape_of(x);
  s[0] = rows.size();
  Tensor out = Tensor::from_shape(s);
  for (std::size_t r = 0; r < rows.size(); ++r) std::copy(x.data() + rows[r] * d, x.data() + (rows[r] + 1) * d, out.data() + r * d);
  return out;
}

std::size_t count_of(const std::vector<int>& labels, int k) {
  return static_cast<std::size_t>(std::count(labels.begin(), labels.end(), k));
}

double squared_distance(const float* a, const float* b, std::size_t d) {
  double s = 0;
  for (std::size_t j = 0; j < d; ++j) s += (double(a[j]) - b[j]) * (double(a[j]) - b[j]);
  return s;
}

/// A metric that has no value without the labels.
class LabelledMetric : public Metric {
 public:
  bool needs_labels() const override { return true; }
  double compute(const Tensor&, const Tensor&, Rng&) const override {
    throw Error("this metric reads the class each sample was asked for and each reference row's class: it needs "
                "the labels (compute_labelled)");
  }
};

class ClassFraction : public LabelledMetric {
 public:
  explicit ClassFraction(bool nearest_neighbour) : nearest_neighbour_(nearest_neighbour) {}

  MetricValue compute_labelled(const Tensor& x, const std::vector<int>& labels, const Tensor& ref,
                               const std::vector<int>& ref_labels, Rng&) const override {
    check_labels(x, labels, "samples");
    check_labels(ref, ref_labels, "reference");
    const std::size_t d = point_size(x), n = labels.size();
    if (d != point_size(ref)) throw Error("class_fraction: samples " + shape_str(x) + " and reference " + shape_str(ref) + " differ");
    const int k = class_count(labels, ref_labels);
    std::vector<double> means(std::size_t(k) * d, 0.0);
    std::vector<std::size_t> counts(std::size_t(k), 0);
    for (std::size_t i = 0; i < ref_labels.size(); ++i) {
      const std::size_t c = std::size_t(ref_labels[i]);
      ++counts[c];
      for (std::size_t j = 0; j < d; ++j) means[c * d + j] += ref.data()[i * d + j];
    }
    std::vector<float> meansf(means.size());
    for (std::size_t c = 0; c < counts.size(); ++c)
      for (std::size_t j = 0; j < d; ++j) meansf[c * d + j] = counts[c] ? float(means[c * d + j] / double(counts[c])) : 0.0f;

    std::vector<double> hits(std::size_t(k), 0.0), asked(std::size_t(k), 0.0);
    double total = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const float* p = x.data() + i * d;
      int best = -1;
      double best_d = std::numeric_limits<double>::infinity();
      if (nearest_neighbour_) {
        for (std::size_t r = 0; r < ref_labels.size(); ++r)
          if (const double dd = squared_distance(p, ref.data() + r * d, d); dd < best_d) best_d = dd, best = ref_labels[r];
      } else {
        for (int c = 0; c < k; ++c)
          if (counts[std::size_t(c)])
            if (const double dd = squared_distance(p, meansf.data() + std::size_t(c) * d, d); dd < best_d) best_d = dd, best = c;
      }
      const bool hit = best == labels[i];
      total += hit;
      hits[std::size_t(labels[i])] += hit;
      asked[std::size_t(labels[i])] += 1;
    }
    MetricValue v;
    v.value = total / double(n);
    for (int c = 0; c < k; ++c)
      if (asked[std::size_t(c)] > 0) v.figures.emplace_back("class_" + std::to_string(c), hits[std::size_t(c)] / asked[std::size_t(c)]);
    return v;
  }

 private:
  bool nearest_neighbour_;
};

class ClassW2 : public LabelledMetric {
 public:

  MetricValue compute_labelled(const Tensor& x, const std::vector<int>& labels, const Tensor& ref,
                               const std::vector<int>& ref_labels, Rng&) const override {
    check_labels(x, labels, "samples");
    check_labels(ref, ref_labels, "reference");
    const int k = class_count(labels, ref_labels);
    MetricValue v;
    double sum = 0;
    int classes = 0;
    for (int c = 0; c < k; ++c) {
      const std::size_t m = std::min(count_of(labels, c), count_of(ref_labels, c));
      if (m == 0) continue;
      const double w2 = w2_exact(rows_of_class(x, labels, c, m), rows_of_class(ref, ref_labels, c, m));
      v.figures.emplace_back("class_" + std::to_string(c), w2);
      v.figures.emplace_back("n_class_" + std::to_string(c), double(m));
      sum += w2;
      ++classes;
    }
    if (classes == 0) throw Error("class_w2: no class has both samples and reference rows");
    v.value = sum / classes;
    return v;
  }
};

}  // namespace

DIFFUSION_REGISTER(metrics, "class_fraction", [](const ConfigNode& c, const BuildContext&) {
  return std::make_shared<ClassFraction>(c.get_choice("classify", "nearest_mean", {"nearest_mean", "nearest_neighbour"}) ==
                                         "nearest_neighbour");
});
DIFFUSION_REGISTER(metrics, "class_w2", [](const ConfigNode&, const BuildContext&) { return std::make_shared<ClassW2>(); });

}  // namespace diffusion::guidance

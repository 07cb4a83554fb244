#include "diffusion/run/init_architecture.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>

#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/run/checkpoint.hpp"

namespace diffusion {
namespace {

constexpr int kTimes = 33;   // times at which paths and preconditionings are compared
constexpr int kInputs = 16;  // random inputs on which networks are compared

/// The node at a dotted key path ("models.teacher.network"), if present. (Recursive: assigning
/// one ConfigNode to another would assign the yaml-cpp nodes they view, rewriting the document.)
std::optional<ConfigNode> node_at(const ConfigNode& node, const std::string& dotted) {
  const std::size_t dot = dotted.find('.');
  if (!node.is_map()) return std::nullopt;
  const auto child = node.find(dotted.substr(0, dot));
  if (!child || dot == std::string::npos) return child;
  return node_at(*child, dotted.substr(dot + 1));
}

/// Equal as numbers that two spellings of one formula give: to 1e-9, relative (the closed-form
/// eps prediction and the general preconditioning that equals it round differently).
bool same_number(double a, double b) {
  if (a == b || (std::isnan(a) && std::isnan(b))) return true;
  return std::abs(a - b) <= 1e-9 * std::max({1.0, std::abs(a), std::abs(b)});
}

/// Times spread over the inside of [lo, hi] (the ends may be singular: sigma = 0 at t_min).
std::vector<double> spread(double lo, double hi) {
  std::vector<double> t(kTimes);
  for (int k = 0; k < kTimes; ++k) t[k] = lo + (hi - lo) * (k + 0.5) / kTimes;
  return t;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

/// "" when the paths agree, else what differs first.
std::string compare_paths(const Path& a, const Path& b) {
  if (!same_number(a.t_min(), b.t_min()) || !same_number(a.t_max(), b.t_max()))
    return "times [" + num(a.t_min()) + ", " + num(a.t_max()) + "] -> [" + num(b.t_min()) + ", " + num(b.t_max()) + "]";
  if (a.num_steps() != b.num_steps())
    return "steps " + std::to_string(a.num_steps()) + " -> " + std::to_string(b.num_steps());
  for (const double t : spread(a.t_min(), a.t_max())) {
    if (!same_number(a.alpha(t), b.alpha(t)) || !same_number(a.sigma(t), b.sigma(t)))
      return "at t = " + num(t) + ": alpha, sigma (" + num(a.alpha(t)) + ", " + num(a.sigma(t)) + ") -> (" +
             num(b.alpha(t)) + ", " + num(b.sigma(t)) + ")";
    if (a.network_time(t) != b.network_time(t))
      return "at t = " + num(t) + ": the network's time input " + num(a.network_time(t)) + " -> " + num(b.network_time(t));
  }
  return "";
}

/// "" when the preconditionings agree on `path`, else what differs first.
std::string compare_preconditionings(const Preconditioning& a, const Preconditioning& b, const Path& path) {
  for (const double t : spread(path.t_min(), path.t_max())) {
    const Scalings sa = a.scalings(path, t), sb = b.scalings(path, t);
    const Readout ra = a.readout(path, t), rb = b.readout(path, t);
    const double va[] = {sa.c_skip, sa.c_out, sa.c_in, sa.c_noise, ra.x0.x / ra.x0.div, ra.x0.f / ra.x0.div,
                         ra.eps.x / ra.eps.div, ra.eps.f / ra.eps.div};
    const double vb[] = {sb.c_skip, sb.c_out, sb.c_in, sb.c_noise, rb.x0.x / rb.x0.div, rb.x0.f / rb.x0.div,
                         rb.eps.x / rb.eps.div, rb.eps.f / rb.eps.div};
    for (std::size_t i = 0; i < std::size(va); ++i)
      if (!same_number(va[i], vb[i]))
        return a.name() + " -> " + b.name() + " (they read the network's output differently at t = " + num(t) + ")";
  }
  return "";
}

/// "" when the two networks, each loaded from `weights`, compute the same outputs.
std::string compare_networks(Network& a, Network& b, const H5::Group& weights, const ArchitectureCheck& check,
                             const std::string& where) {
  a.load(weights);
  try {
    b.load(weights);
  } catch (const Error& e) {
    return std::string("the file's weights do not fit the new network: ") + e.what();
  }
  Shape shape{static_cast<std::size_t>(kInputs)};
  shape.insert(shape.end(), check.build.data_shape.begin(), check.build.data_shape.end());
  Rng rng = Rng(0).split("init architecture");
  const Tensor x = rng.normal(shape);
  // Noise inputs over the network's range: the path's own time inputs.
  Tensor t = Tensor::from_shape({static_cast<std::size_t>(kInputs)});
  const auto times = spread(check.path->t_min(), check.path->t_max());
  for (int i = 0; i < kInputs; ++i) t.flat(i) = check.path->network_time(times[std::size_t(i) * times.size() / kInputs]);
  Condition c;
  if (check.build.num_classes > 0 && (a.class_conditional() || b.class_conditional())) {
    std::vector<int> labels(kInputs);
    for (int i = 0; i < kInputs; ++i) labels[std::size_t(i)] = i % check.build.num_classes;
    c = Condition::from_labels(std::move(labels));
  }
  const Tensor ya = a.forward(Var(x), t, c).value(), yb = b.forward(Var(x), t, c).value();
  if (shape_of(ya) != shape_of(yb))
    return "its output has shape " + shape_str(shape_of(yb)) + " instead of " + shape_str(shape_of(ya));
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < ya.size(); ++i) {
    worst = std::max(worst, std::abs(double(ya.flat(i)) - double(yb.flat(i))));
    scale = std::max(scale, std::abs(double(ya.flat(i))));
  }
  if (!(worst <= 1e-5 * (1 + scale)))
    return "the file's weights compute another function in the new " + where + " (outputs differ by up to " +
           num(worst) + " on random inputs)";
  return "";
}

/// Runs a comparison that builds the stored config's components; a stored section that cannot
/// be built differs by its keys.
template <class F>
std::string built(F compare) {
  try {
    return compare();
  } catch (const std::exception& e) {
    return std::string("the file's config cannot be built to compare (") + e.what() + ")";
  }
}

}  // namespace

std::vector<ArchitectureDifference> architecture_differences(const Config& stored, const Config& now,
                                                             const std::string& stored_network_key,
                                                             const ConfigNode& network_node,
                                                             const H5::Group& root, const std::string& weights,
                                                             const ArchitectureCheck& check) {
  std::vector<ArchitectureDifference> diffs;
  Registries& regs = *check.registries;
  const ConfigNode old_root = stored.root(), new_root = now.root();
  BuildContext ctx = check.build;
  Rng init(0);  // the stored components' own: the experiment's init stream is not touched
  ctx.rng = &init;
  const auto keys_between = [](const std::optional<ConfigNode>& a, const std::optional<ConfigNode>& b) {
    if (a && b) return describe(config_differences(*a, *b));
    if (!a && !b) return std::string();
    return (b ? b->path() : a->path()) + (a ? " (present -> absent)" : " (absent -> present)");
  };

  // The network.
  if (const auto old_net = node_at(old_root, stored_network_key)) {
    const std::string keys = describe(config_differences(*old_net, network_node));
    if (!keys.empty()) {
      const std::string how = built([&] {
        const auto a = regs.networks.create(*old_net, ctx);
        const auto b = regs.networks.create(network_node, ctx);
        return compare_networks(*a, *b, h5_open_group(root, weights), check, network_node.path());
      });
      if (!how.empty()) diffs.push_back({"network", keys, how});
    }
  } else {
    diffs.push_back({"network", "", "the file's config has no " + stored_network_key});
  }

  // The path.
  const auto old_sde = old_root.find("sde"), new_sde = new_root.find("sde");
  if (const std::string keys = check.compare_path ? keys_between(old_sde, new_sde) : ""; !keys.empty()) {
    const std::string how = built([&] {
      if (!old_sde) return std::string("the file's config has no sde");
      return compare_paths(*regs.paths.create(*old_sde, ctx), *check.path);
    });
    if (!how.empty()) diffs.push_back({"sde", keys, how});
  }

  // The preconditioning, through the loss that names it.
  if (check.preconditioning) {
    const auto old_loss = old_root.find("loss"), new_loss = new_root.find("loss");
    if (const std::string keys = keys_between(old_loss, new_loss); !keys.empty()) {
      const std::string how = built([&] {
        if (!old_loss) return std::string("the file's config has no loss");
        const auto pre = regs.losses.create(*old_loss, ctx)->preconditioning();
        if (!pre) return std::string("the file's loss has no preconditioning");
        return compare_preconditionings(*pre, *check.preconditioning, *check.path);
      });
      if (!how.empty()) diffs.push_back({"preconditioning", keys, how});
    }
  }

  // The shape of one sample.
  if (h5_exists(root, "data/reference")) {
    Shape rows = read_shape(h5_open_group(root, "data"), "reference");
    if (!rows.empty()) {
      rows.erase(rows.begin());
      if (rows != check.sample_shape) {
        const auto old_data = old_root.find("dataset"), new_data = new_root.find("dataset");
        diffs.push_back({"sample shape", keys_between(old_data, new_data),
                         "the file's samples have shape " + shape_str(rows) + ", the data set's " +
                             shape_str(check.sample_shape)});
      }
    }
  }
  return diffs;
}

std::string describe(const std::vector<ArchitectureDifference>& diffs) {
  std::string s;
  for (const auto& d : diffs) {
    if (!s.empty()) s += "; ";
    s += d.keys.empty() ? d.part + ": " + d.how : d.keys + ": " + d.how;
  }
  return s;
}

}  // namespace diffusion

// The core's own components under their YAML names, read from their config nodes: metrics, time
// grids, preconditionings and codecs. Registered when the registries are first used.
#include "diffusion/io/config.hpp"
#include "diffusion/io/text.hpp"
#include "diffusion/metrics/metrics.hpp"
#include "diffusion/metrics/sample_metrics.hpp"
#include "diffusion/model/predictions.hpp"
#include "diffusion/plugin/sampler_options.hpp"
#include "diffusion/plugin/registries.hpp"

namespace diffusion {
namespace {

// The metrics are components of their own (sample_metrics.hpp): each knows the sizes it can
// finish and the memory it needs.
void register_metrics(Registries& regs) {
  regs.metrics.add("w2", [](const ConfigNode& c, const BuildContext&) {
    const auto max_n = c.get_int("max_n", ExactW2Metric::kDefaultMaxPoints, 1);
    return std::make_shared<ExactW2Metric>(static_cast<std::size_t>(max_n));
  });
  regs.metrics.add("sliced_w2", [](const ConfigNode& c, const BuildContext&) {
    const auto p = static_cast<std::size_t>(c.get_int("projections", 512, 1, 1 << 20));
    return std::make_shared<SlicedW2Metric>(p);
  });
  regs.metrics.add("mmd", [](const ConfigNode& c, const BuildContext&) {
    const auto bw = c.get_double_list("bandwidths", default_mmd_bandwidths(), 1e-12);
    const auto max_n = c.get_int("max_n", PairwiseMetric::kDefaultMaxPoints, 2);
    return std::make_shared<MmdMetric>(bw, static_cast<std::size_t>(max_n));
  });
  regs.metrics.add("energy", [](const ConfigNode& c, const BuildContext&) {
    const auto max_n = c.get_int("max_n", PairwiseMetric::kDefaultMaxPoints, 1);
    return std::make_shared<EnergyMetric>(static_cast<std::size_t>(max_n));
  });
}

void register_time_grids(Registries& regs) {
  regs.time_grids.add("linear", [](const ConfigNode&, const BuildContext&) { return make_linear_grid(); });
  regs.time_grids.add("quadratic", [](const ConfigNode&, const BuildContext&) { return make_quadratic_grid(); });
  regs.time_grids.add("log_snr", [](const ConfigNode&, const BuildContext&) { return make_log_snr_grid(); });
  regs.time_grids.add("karras", [](const ConfigNode& c, const BuildContext&) {
    const double rho = c.get_double("rho", 7.0, Interval::greater_than(0));
    const double s_min = c.get_double("sigma_min", 0.0, Interval::at_least(0));
    const double s_max = c.get_double("sigma_max", 0.0, Interval::at_least(0));
    if (s_min > 0 && s_max > 0 && !(s_min < s_max)) c.at("sigma_min").error("expected sigma_min < sigma_max");
    return make_karras_grid(rho, s_min, s_max);
  });
  regs.time_grids.add("piecewise", [](const ConfigNode& c, const BuildContext&) {
    std::vector<double> times = read_decreasing_times(c, "times", 2);
    std::vector<double> shares = c.get_double_list("shares");
    if (shares.size() != times.size() - 1)
      c.at("shares").error("expected one share per interval between the times (" + std::to_string(times.size() - 1) +
                           "), got " + std::to_string(shares.size()));
    for (const double w : shares)
      if (!(w > 0.0)) c.at("shares").error("expected positive shares, got " + format_number(w));
    return make_piecewise_grid(std::move(times), std::move(shares));
  });
  regs.time_grids.add("list", [](const ConfigNode& c, const BuildContext&) {
    return make_list_grid(read_decreasing_times(c, "times", 1));
  });
}

void register_preconditionings(Registries& regs) {
  for (const char* name : {"eps", "x0", "v", "score", "velocity"})
    regs.preconditionings.add(name, [name](const ConfigNode&, const BuildContext&) { return make_prediction(name); });
}

void register_codecs(Registries& regs) {
  regs.codecs.add("standardize", [](const ConfigNode& c, const BuildContext& ctx) {
    const std::string per = c.get_choice("per", "coordinate", {"coordinate", "channel", "all"});
    const auto samples = static_cast<std::size_t>(c.get_int("samples", 20000, 2, 100000000));
    auto codec = make_standardize_codec(per == "coordinate" ? StandardizePer::coordinate
                                        : per == "channel"  ? StandardizePer::channel
                                                            : StandardizePer::all,
                                        samples);
    // The codec's own check of the data's shape, reported at `per`.
    try {
      if (!ctx.data_shape.empty()) codec->encoded_shape(ctx.data_shape);
    } catch (const Error& e) {
      c.at("per").error(e.what());
    }
    return codec;
  });
  regs.codecs.add("identity", [](const ConfigNode&, const BuildContext&) { return make_identity_codec(); });
}

}  // namespace

void register_core_components(Registries& regs) {
  register_metrics(regs);
  register_time_grids(regs);
  register_preconditionings(regs);
  register_codecs(regs);
}

}  // namespace diffusion

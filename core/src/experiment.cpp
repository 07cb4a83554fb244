#include "diffusion/experiment.hpp"

#include <filesystem>
#include <set>

namespace diffusion {
namespace {

std::unique_ptr<Optimizer> make_optimizer(const ConfigNode& c, const std::vector<Var>& params) {
  const std::string type = c.get_choice("type", "adam", {"adam", "adamw", "sgd"});
  const double lr = c.get_double("lr", 1e-3, Interval::greater_than(0));
  const double wd_default = type == "adamw" ? 1e-2 : 0.0;
  const double wd = c.get_double("weight_decay", wd_default, Interval::at_least(0));
  if (type == "sgd") {
    SgdOptions o;
    o.lr = lr;
    o.weight_decay = wd;
    o.momentum = c.get_double("momentum", 0.0, Interval::half_open(0, 1));
    o.dampening = c.get_double("dampening", 0.0, Interval::closed(0, 1));
    o.nesterov = c.get_bool("nesterov", false);
    if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
      c.error("nesterov needs momentum > 0 and dampening 0");
    return std::make_unique<SGD>(params, o);
  }
  AdamOptions o;
  o.lr = lr;
  o.weight_decay = wd;
  const auto betas = c.get_double_list("betas", {0.9, 0.999}, 0.0, 1.0);
  if (betas.size() != 2) c.at("betas").fail("a list of two numbers in [0, 1)");
  o.beta1 = betas[0];
  o.beta2 = betas[1];
  o.eps = c.get_double("eps", 1e-8, Interval::greater_than(0));
  if (type == "adamw") {
    AdamWOptions w;
    static_cast<AdamOptions&>(w) = o;
    return std::make_unique<AdamW>(params, w);
  }
  return std::make_unique<Adam>(params, o);
}

LrSchedule make_schedule(const ConfigNode& train, double base_lr, std::int64_t steps) {
  const auto node = train.find("lr_schedule");
  if (!node) return LrSchedule::constant(base_lr);
  const std::string type = node->type();
  const std::int64_t warmup = node->get_int("warmup", 0, 0, steps);
  if (type == "constant") return LrSchedule::constant(base_lr);
  if (type == "warmup") {
    if (warmup == 0) node->at("warmup").fail("an integer >= 1 for a warm-up schedule");
    return LrSchedule::linear_warmup(base_lr, warmup);
  }
  if (type == "cosine")
    return LrSchedule::cosine(base_lr, steps, warmup, node->get_double("min_lr", 0.0, Interval::at_least(0)));
  node->error("unknown lr_schedule type '" + type + "' (expected constant, cosine or warmup)");
}

}  // namespace

Experiment compose_experiment(const Config& config, Registries& regs) {
  Experiment ex(config);
  const ConfigNode root = ex.config.root();
  ex.name = root.get_string("name", std::filesystem::path(config.name()).stem().string());
  ex.seed = static_cast<std::uint64_t>(root.get_int("seed", 0, 0));
  Rng init = Rng(ex.seed).split("init");

  BuildContext ctx;
  ctx.rng = &init;
  ex.dataset = regs.datasets.create(root.at("dataset"), ctx);
  ctx.data_shape = ex.dataset->sample_shape();
  ctx.num_classes = ex.dataset->num_classes();
  const ConfigNode net_node = root.at("network");
  ex.network = regs.networks.create(net_node, ctx);
  ex.sde = regs.sdes.create(root.at("sde"), ctx);
  ex.loss = regs.losses.create(root.at("loss"), ctx);

  const ConfigNode train = root.at("train");
  TrainSettings& ts = ex.train;
  ts.steps = train.get_int("steps", 1000, 1);
  ts.batch_size = train.get_int("batch_size", 256, 1);
  ts.log_every = train.get_int("log_every", std::max<std::int64_t>(1, ts.steps / 100), 1);
  ts.ema_decay = train.get_double("ema", 0.0, Interval::half_open(0, 1));
  ts.ema_warmup = train.get_bool("ema_warmup", true);
  ts.grad_clip = train.get_double("grad_clip", 0.0, Interval::at_least(0));
  ts.normalize = train.get_bool("normalize", true);
  ts.normalize_samples = train.get_int("normalize_samples", 20000, 2);
  ts.checkpoint_every = train.get_int("checkpoint_every", std::max<std::int64_t>(1000, ts.steps / 10), 0);
  ts.keep_checkpoints = train.get_int("keep_checkpoints", 2, 1);
  const auto opt_node = train.find("optimizer");
  const ConfigNode opt = opt_node ? *opt_node : train.at("optimizer");
  ex.optimizer = make_optimizer(opt, ex.network->parameters());
  ts.schedule = make_schedule(train, ex.optimizer->lr(), ts.steps);
  if (ts.ema_decay > 0) {
    // A second network from the same node and the same init stream has the same structure.
    Rng ema_init = Rng(ex.seed).split("init");
    BuildContext ema_ctx = ctx;
    ema_ctx.rng = &ema_init;
    ex.ema_network = regs.networks.create(net_node, ema_ctx);
    ex.ema_network->copy_parameters_from(*ex.network);
  }

  // `sampler: {...}` for one, `samplers: [{...}, ...]` for several.
  std::vector<ConfigNode> sampler_nodes;
  if (const auto one = root.find("sampler")) sampler_nodes.push_back(*one);
  if (const auto many = root.find("samplers"))
    for (const auto& n : many->items()) sampler_nodes.push_back(n);
  std::set<std::string> names;
  for (const auto& node : sampler_nodes) {
    SamplerSpec s;
    s.type = node.type();
    s.name = node.get_string("name", s.type);
    s.n = static_cast<std::size_t>(node.get_int("n", 2000, 1));
    s.trajectory = static_cast<std::size_t>(node.get_int("trajectory", 0, 0, 10000));
    s.use_ema = node.get_bool("use_ema", true);
    if (!names.insert(s.name).second)
      node.error("two samplers are named '" + s.name + "'; give one a different `name:`");
    s.sampler = regs.samplers.create(node, ctx);
    try {
      s.sampler->check(*ex.sde);
    } catch (const ConfigError&) {
      throw;
    } catch (const Error& e) {
      // The usual culprit is the step count; point there when it was given.
      (node.has("steps") ? node.at("steps") : node).error(e.what());
    }
    ex.reference_n = std::max(ex.reference_n, s.n);
    ex.samplers.push_back(std::move(s));
  }

  if (const auto metrics = root.find("metrics")) {
    const auto items = metrics->is_sequence() ? metrics->items() : std::vector<ConfigNode>{*metrics};
    for (const auto& node : items) {
      MetricSpec m;
      m.name = node.type();
      m.metric = regs.metrics.create(node, ctx);
      ex.metrics.push_back(std::move(m));
    }
  }
  const auto ref = root.find("reference");
  if (ref) ex.reference_n = static_cast<std::size_t>(ref->get_int("n", std::max<std::size_t>(ex.reference_n, 1), 1));
  root.check_no_unknown_keys();
  return ex;
}

}  // namespace diffusion

#include "diffusion/run/experiment.hpp"

#include <filesystem>
#include <functional>
#include <limits>
#include <set>

#include "diffusion/io/hdf5_io.hpp"

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

/// `init:`: load the model (and EMA, and the data normaliser) of a results file into ex.
/// Every failure is a ConfigError at the `init` key, naming the file.
void load_init(Experiment& ex, const ConfigNode& node, const std::function<std::shared_ptr<Network>()>& make_network) {
  const std::string path = ex.init;
  if (path.empty()) node.fail("the path of a results file (.h5)");
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) node.error("init file " + path + " does not exist");
  if (std::filesystem::is_directory(path, ec)) node.error("init file " + path + " is a folder, not a results file");
  H5::Exception::dontPrint();
  try {
    if (!H5::H5File::isHdf5(path)) node.error("init file " + path + " is not an HDF5 results file");
    H5::H5File file(path, H5F_ACC_RDONLY);
    const H5::Group root = file.openGroup("/");
    if (!has_attribute(root, "config") || !h5_exists(root, "model") || !h5_exists(root, "data/mean") ||
        !h5_exists(root, "data/std")) {
      std::string status = has_attribute(root, "status") ? read_string_attribute(root, "status") : "";
      node.error("init file " + path + " is not a results file with a trained model (" +
                 (status.empty() ? std::string("no config, /model or /data/mean")
                                 : "status=" + status + ", no /model or /data/mean") + ")");
    }
    // Module::load names the first parameter whose name or shape differs.
    ex.network->load(h5_open_group(root, "model"));
    const bool file_ema = h5_exists(root, "ema");
    if (ex.ema_network) {
      if (file_ema) {
        ex.ema_network->load(h5_open_group(root, "ema"));
        ex.init_ema = true;
      } else {
        ex.ema_network->copy_parameters_from(*ex.network);
      }
    } else if (file_ema && ex.train.steps == 0) {
      ex.ema_network = make_network();
      ex.ema_network->load(h5_open_group(root, "ema"));
      ex.init_ema = true;
    }
    const Shape shape = ex.dataset->sample_shape();
    const H5::Group data = h5_open_group(root, "data");
    ex.init_mean = read_tensor(data, "mean", shape);
    ex.init_std = read_tensor(data, "std", shape);
  } catch (const ConfigError&) {
    throw;
  } catch (const H5::Exception& e) {
    node.error("init file " + path + ": unreadable (" + e.getDetailMsg() + ")");
  } catch (const Error& e) {
    std::string msg = e.what();
    // Module::load's messages start with "<file>:<group>"; name the file once.
    if (msg.rfind(path, 0) != 0) msg = path + ": " + msg;
    node.error("init file " + msg + " (does the network match the one that was trained?)");
  }
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
  // `init: results/x.h5` (null: none) loads a trained model; with it train.steps may be 0.
  const auto init_node = root.find("init");
  const bool has_init = init_node && !init_node->is_null();
  if (has_init) {
    if (!init_node->is_scalar()) init_node->fail("the path of a results file (.h5)");
    ex.init = root.get_string("init");
  }
  try {
    ts.steps = train.get_int("steps", 1000, has_init ? 0 : 1);
  } catch (const ConfigError&) {
    bool zero = false;
    try {
      zero = train.get_int("steps", 1000, 0) == 0;
    } catch (const ConfigError&) {
    }
    if (!zero) throw;
    train.at("steps").error("expected an integer >= 1, got 0 (0 only with `init:`, to evaluate a trained model)");
  }
  ts.batch_size = train.get_int("batch_size", 256, 1);
  ts.shards = train.get_int("shards", 1, 1, 1024);
  if (ts.batch_size % ts.shards != 0)
    train.at("shards").error("expected a divisor of batch_size (" + std::to_string(ts.batch_size) +
                             "), got " + std::to_string(ts.shards));
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
  // Without training the schedule is never used: check its keys but not against 0 steps.
  ts.schedule = make_schedule(train, ex.optimizer->lr(),
                              ts.steps > 0 ? ts.steps : std::numeric_limits<std::int64_t>::max());
  const auto make_network = [&] {
    // A second network from the same node and the same init stream has the same structure.
    Rng ema_init = Rng(ex.seed).split("init");
    BuildContext ema_ctx = ctx;
    ema_ctx.rng = &ema_init;
    return regs.networks.create(net_node, ema_ctx);
  };
  if (ts.ema_decay > 0) {
    ex.ema_network = make_network();
    ex.ema_network->copy_parameters_from(*ex.network);
  }
  if (has_init) load_init(ex, *init_node, make_network);

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

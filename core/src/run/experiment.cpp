// compose_experiment: the YAML file's components, built through the registries and checked
// before anything runs. The named models and `init:` live in experiment_models.cpp.
#include "diffusion/run/experiment.hpp"

#include <filesystem>
#include <limits>
#include <set>

#include "diffusion/run/experiment_models.hpp"
#include "diffusion/run/memory_estimate.hpp"

namespace diffusion {
namespace {

// Why `name` cannot name a file in the results folder or an HDF5 group ("" when it can): an
// empty name, one with a path separator (it would write elsewhere: name=../../escape) or a
// control character, or one starting with '.' (a hidden file, or "." and "..").
std::string bad_name_reason(const std::string& name) {
  if (name.empty()) return "is empty";
  if (name.size() > 200) return "is longer than 200 characters";
  for (const char c : name) {
    if (c == '/' || c == '\\') return "contains a path separator";
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "contains a control character";
  }
  if (name[0] == '.') return "starts with '.'";
  return "";
}

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

/// train.steps: >= 1, or 0 with `init:` (evaluate a trained model).
std::int64_t read_steps(const ConfigNode& train, bool has_init) {
  try {
    return train.get_int("steps", 1000, has_init ? 0 : 1);
  } catch (const ConfigError&) {
    bool zero = false;
    try {
      zero = train.get_int("steps", 1000, 0) == 0;
    } catch (const ConfigError&) {
    }
    if (!zero) throw;
    train.at("steps").error("expected an integer >= 1, got 0 (0 only with `init:`, to evaluate a trained model)");
  }
}

void read_train_settings(const ConfigNode& train, bool has_init, TrainSettings& ts) {
  ts.steps = read_steps(train, has_init);
  ts.batch_size = train.get_int("batch_size", 256, 1);
  ts.shards = train.get_int("shards", 1, 1, 1024);
  if (ts.batch_size % ts.shards != 0)
    train.at("shards").error("expected a divisor of batch_size (" + std::to_string(ts.batch_size) + "), got " +
                             std::to_string(ts.shards));
  ts.log_every = train.get_int("log_every", std::max<std::int64_t>(1, ts.steps / 100), 1);
  ts.loss_by_t_bins = train.get_int("loss_by_t_bins", 20, 1, 10000);
  ts.ema_decay = train.get_double("ema", 0.0, Interval::half_open(0, 1));
  ts.ema_warmup = train.get_bool("ema_warmup", true);
  ts.grad_clip = train.get_double("grad_clip", 0.0, Interval::at_least(0));
  ts.checkpoint_every = train.get_int("checkpoint_every", std::max<std::int64_t>(1000, ts.steps / 10), 0);
  ts.keep_checkpoints = train.get_int("keep_checkpoints", 2, 1);
  ts.freeze = train.get_string_list("freeze", {});
  ts.label_dropout = train.get_double("label_dropout", 0.0, Interval::closed(0, 1));
}

/// `source:` absent or `standard_normal`: the standard Gaussian; else any data set, encoded by
/// the experiment's codec.
std::shared_ptr<Source> make_source(const ConfigNode& root, const Experiment& ex, Registries& regs,
                                    const BuildContext& ctx) {
  const auto node = root.find("source");
  if (!node || node->is_null() || node->type() == "standard_normal") {
    if (node && node->is_map()) node->check_no_unknown_keys();
    return std::make_shared<StandardNormalSource>();
  }
  std::shared_ptr<Dataset> data = regs.datasets.create(*node, ctx);
  if (data->sample_shape() != ex.dataset->sample_shape())
    node->error("the source's samples have shape " + shape_str(data->sample_shape()) + " but the data set's have " +
                shape_str(ex.dataset->sample_shape()));
  return std::make_shared<DatasetSource>(std::move(data), ex.codec, node->type());
}

/// Refuse, at `node`, a component that needs a named model the experiment does not have.
void require_models(const std::vector<std::string>& needed, const Models& models, const ConfigNode& node,
                    const std::string& who) {
  for (const std::string& slot : needed)
    if (!models.has(slot)) {
      std::string have;
      for (const ModelSlot& m : models.slots()) have += (have.empty() ? "" : ", ") + m.name;
      node.error(who + " needs the named model '" + slot + "' (the experiment has " + have +
                 "); declare it under `models:`, e.g. `models: {" + slot + ": {}}`");
    }
}

/// The loss's named models: present, and unfrozen where its after_step changes them.
void check_loss_models(const Experiment& ex, const ConfigNode& loss_node) {
  require_models(ex.loss->required_models(), ex.models, loss_node, "the loss");
  require_models(ex.loss->changed_models(), ex.models, loss_node, "the loss");
  for (const std::string& slot : ex.loss->changed_models())
    if (ex.models.slot(slot).frozen)
      loss_node.error("the loss changes the named model '" + slot + "' after each step, but it is frozen (set `frozen: false`)");
}

/// `sampler: {...}` for one, `samplers: [{...}, ...]` for several; each checked against the path.
void read_samplers(const ConfigNode& root, Experiment& ex, Registries& regs, const BuildContext& ctx) {
  std::vector<ConfigNode> nodes;
  if (const auto one = root.find("sampler")) nodes.push_back(*one);
  if (const auto many = root.find("samplers"))
    for (const auto& n : many->items()) nodes.push_back(n);
  std::set<std::string> names;
  for (const auto& node : nodes) {
    SamplerSpec s;
    s.type = node.type();
    s.name = node.get_string("name", s.type);
    s.n = static_cast<std::size_t>(node.get_int("n", 2000, 1));
    s.trajectory = static_cast<std::size_t>(node.get_int("trajectory", 0, 0, 10000));
    s.use_ema = node.get_bool("use_ema", true);
    s.repeats = static_cast<std::size_t>(node.get_int("repeats", 1, 1, 1000));
    s.batch = static_cast<std::size_t>(node.get_int("batch", 0, 0));
    if (const auto g = node.find("guidance")) {  // a guided model, for every sampler alike
      s.guidance = regs.guidances.create(*g, ctx);
      try {
        s.guidance->check(ex.network(), ex.dataset->num_classes());
      } catch (const ConfigError&) {
        throw;
      } catch (const Error& e) {
        g->error(e.what());
      }
      require_models(s.guidance->required_models(), ex.models, *g, "the guidance of sampler " + s.name);
    }
    if (const auto l = node.find("labels")) {  // data, balanced, or one class k
      const int k = ex.dataset->num_classes();
      if (k <= 0) l->error("the data set has no class labels to ask for");
      const std::string v = l->is_scalar() ? l->as_string() : "";
      if (v == "data" || v == "balanced") {
        s.labels = v == "data" ? SamplerSpec::kLabelsFromData : SamplerSpec::kLabelsBalanced;
      } else {
        try {
          s.labels = static_cast<int>(l->as_int(0, k - 1));
        } catch (const ConfigError&) {
          l->fail("data, balanced or a class in 0.." + std::to_string(k - 1));
        }
      }
    }
    s.labels_given = s.guidance || node.has("labels");
    if (const std::string why = bad_name_reason(s.name); !why.empty())
      node.at("name").error("the sampler's name '" + s.name + "' " + why + " (it names the group /samples/<name>)");
    if (s.name == "data") node.at("name").error("'data' is the metric floor's group; give the sampler another name");
    if (s.name == "model")
      node.at("name").error("'model' is the group of the model's own metrics; give the sampler another name");
    if (!names.insert(s.name).second)
      node.error("two samplers are named '" + s.name + "'; give one a different `name:`");
    s.sampler = regs.samplers.create(node, ctx);
    try {
      s.sampler->check(*ex.path, *ex.source);
    } catch (const ConfigError&) {
      throw;
    } catch (const Error& e) {
      // The usual culprit is the step count; point there when it was given.
      (node.has("steps") ? node.at("steps") : node).error(e.what());
    }
    require_models(s.sampler->required_models(), ex.models, node, "sampler " + s.name);
    ex.evaluation.reference_n = std::max(ex.evaluation.reference_n, s.n);
    ex.samplers.push_back(std::move(s));
  }
}

void read_metrics(const ConfigNode& root, Experiment& ex, Registries& regs, const BuildContext& ctx) {
  if (const auto metrics = root.find("metrics")) {
    const auto items = metrics->is_sequence() ? metrics->items() : std::vector<ConfigNode>{*metrics};
    for (const auto& node : items) ex.metrics.push_back({node.type(), regs.metrics.create(node, ctx)});
  }
  if (const auto ref = root.find("reference")) {
    ex.evaluation.reference_n = static_cast<std::size_t>(
        ref->get_int("n", static_cast<std::int64_t>(std::max<std::size_t>(ex.evaluation.reference_n, 1)), 1));
    ex.evaluation.floor_draws = static_cast<std::size_t>(ref->get_int("floor_draws", 5, 1, 1000));
  }
}

}  // namespace

std::shared_ptr<NetworkDenoiser> Experiment::denoiser(std::shared_ptr<Network> network) const {
  return std::make_shared<NetworkDenoiser>(std::move(network), path, loss->preconditioning());
}

Experiment compose_experiment(const Config& config, Registries& regs, const ComposeOptions& options) {
  Experiment ex(config);
  const ConfigNode root = ex.config.root();
  ex.name = root.get_string("name", std::filesystem::path(config.name()).stem().string());
  if (const std::string why = bad_name_reason(ex.name); !why.empty()) {
    const std::string msg = "the experiment's name '" + ex.name + "' " + why +
                            " (it names the results file, results/<name>.h5)";
    if (root.has("name")) root.at("name").error(msg);
    root.error(msg + "; give it a `name:`");
  }
  ex.seed = static_cast<std::uint64_t>(root.get_int("seed", 0, 0));
  Rng init = Rng(ex.seed).split("init");
  BuildContext ctx;
  ctx.rng = &init;
  ex.dataset = regs.datasets.create(root.at("dataset"), ctx);
  ctx.data_shape = ex.dataset->sample_shape();  // the codec's input; after it, the model's space
  const auto codec_node = root.find("codec");
  // Default: points are standardized per coordinate; images (C, H, W) come in [-1, 1], the
  // range their models are made for (a border pixel that is always black has no spread).
  ex.codec = codec_node                    ? regs.codecs.create(*codec_node, ctx)
             : ctx.data_shape.size() > 1 ? make_identity_codec()
                                           : make_standardize_codec(StandardizePer::coordinate);
  try {
    ctx.data_shape = ex.codec->encoded_shape(ex.dataset->sample_shape());
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    (codec_node ? *codec_node : root.at("dataset")).error(std::string("codec: ") + e.what());
  }
  ctx.num_classes = ex.dataset->num_classes();
  ex.source = make_source(root, ex, regs, ctx);
  const ConfigNode net_node = root.at("network");
  ex.models.add({"model", regs.networks.create(net_node, ctx), false, ""});
  ex.path = regs.paths.create(root.at("sde"), ctx);
  ex.loss = regs.losses.create(root.at("loss"), ctx);

  const auto init_node = root.find("init");
  const bool has_init = init_node && !init_node->is_null();
  if (has_init) {
    if (!init_node->is_scalar()) init_node->fail("the path of a results file (.h5)");
    ex.init = root.get_string("init");
  }
  const ConfigNode train = root.at("train");
  read_train_settings(train, has_init, ex.train);
  if (ex.train.label_dropout > 0 && !(ex.network().class_conditional() && ex.dataset->num_classes() > 0))
    train.at("label_dropout").error("drops class labels, but the network is not class-conditional on labelled data "
                                    "(set class_conditional: true on a labelled data set)");
  for (const std::string& path : ex.train.freeze) {
    try {
      ex.network().freeze_path(path);
    } catch (const Error& e) {
      train.at("freeze").error(std::string(e.what()) + " (the model's parameters are named as in /model)");
    }
  }
  const auto opt_node = train.find("optimizer");
  ex.optimizer = make_optimizer(opt_node ? *opt_node : train.at("optimizer"), ex.network().trainable_parameters());
  // Without training the schedule is never used: check its keys but not against 0 steps.
  ex.train.schedule = make_schedule(train, ex.optimizer->lr(),
                                    ex.train.steps > 0 ? ex.train.steps : std::numeric_limits<std::int64_t>::max());
  const NetworkFactory make_network = [&](const ConfigNode& node) {
    // Every slot's network is initialised from the model's stream: the model's own node gives a copy.
    Rng slot_init = Rng(ex.seed).split("init");
    BuildContext slot_ctx = ctx;
    slot_ctx.rng = &slot_init;
    return regs.networks.create(node, slot_ctx);
  };
  if (ex.train.ema_decay > 0) {
    ex.models.add({"ema", make_network(net_node), false, ""});
    ex.models.get("ema").copy_parameters_from(ex.network());
  }
  const InitOptions init_options{&regs, ctx, options.allow_architecture_change};
  if (has_init) load_init(ex, *init_node, [&] { return make_network(net_node); }, init_options);
  if (const auto slots = root.find("models")) read_model_slots(*slots, net_node, make_network, ex, init_options);
  check_loss_models(ex, root.at("loss"));
  {
    // A loss that plans over several batches (batches_per_plan) refuses a batch size it
    // cannot split now, not when training starts.
    TrainContext plan;
    plan.total_steps = ex.train.steps;
    plan.batch_size = ex.train.batch_size;
    ex.loss->batches_per_plan(plan);
  }

  read_samplers(root, ex, regs, ctx);
  read_metrics(root, ex, regs, ctx);
  for (const MetricSpec& m : ex.metrics)  // a metric of class-conditional samples needs their labels
    for (const SamplerSpec& s : ex.samplers)
      if (m.metric->needs_labels() && !((ex.network().class_conditional() || s.labels_given) && ex.dataset->num_classes() > 0))
        root.at("metrics").error("the metric " + m.name + " reads the class each sample was asked for, but sampler " +
                                 s.name + " asks for none (give it `labels:` or `guidance:`, or train a class-conditional network)");
  root.check_no_unknown_keys();
  check_metric_sizes(ex);  // sizes a metric cannot take or finish fail now, not after training
  return ex;
}

}  // namespace diffusion

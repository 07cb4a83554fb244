#include "diffusion/run/experiment_models.hpp"

#include <cctype>
#include <filesystem>
#include <optional>

#include "diffusion/io/file_seal.hpp"
#include "diffusion/io/h5_memory_file.hpp"
#include "diffusion/io/hdf5_io.hpp"

namespace diffusion {
namespace {

/// The results file at `path` opened read-only, its seal checked (file_seal.hpp), or a
/// ConfigError at `node` saying what it is not.
H5::H5File open_results(const std::string& path, const ConfigNode& node) {
  if (path.empty()) node.fail("the path of a results file (.h5)");
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) node.error("init file " + path + " does not exist");
  if (std::filesystem::is_directory(path, ec)) node.error("init file " + path + " is a folder, not a results file");
  H5::Exception::dontPrint();
  try {
    if (!H5::H5File::isHdf5(path)) node.error("init file " + path + " is not an HDF5 results file");
    H5::H5File file = h5_open_verified(path).file;
    const H5::Group root = file.openGroup("/");
    if (!has_attribute(root, "config") || !h5_exists(root, "model")) {
      const std::string status = has_attribute(root, "status") ? read_string_attribute(root, "status") : "";
      node.error("init file " + path + " is not a results file with a trained model (" +
                 (status.empty() ? std::string("no config or /model") : "status=" + status + ", no /model") + ")");
    }
    return file;
  } catch (const CorruptFile& e) {
    node.error("init file " + std::string(e.what()) + "; use an intact copy, or run its experiment again");
  } catch (const H5::Exception& e) {
    node.error("init file " + path + ": unreadable (" + e.getDetailMsg() + ")");
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    node.error("init file " + std::string(e.what()));
  }
}

/// Refuse, at `node`, weights of group `group` that are not finite (a run that diverged).
void check_finite(const H5::Group& root, const std::string& group, const std::string& path, const ConfigNode& node) {
  if (!h5_exists(root, group)) return;
  if (const std::string bad = h5_first_nonfinite(h5_open_group(root, group)); !bad.empty())
    node.error("init file " + path + ": " + bad + " holds NaN or infinite values (did its run diverge?)");
}

/// Refuse, at `node`, a file whose weights (group `weights`, read by network_node's network)
/// were trained with another architecture, unless options allow it. The path is compared for
/// the model's own init (of_the_model), the preconditioning when asked.
void check_architecture(const H5::H5File& file, const std::string& path, const std::string& stored_network_key,
                        const ConfigNode& network_node, const std::string& weights, const Experiment& ex,
                        bool of_the_model, bool with_preconditioning, const InitOptions& options,
                        const ConfigNode& node) {
  if (options.allow_architecture_change) return;
  const H5::Group root = file.openGroup("/");
  std::optional<Config> stored;
  try {
    stored = Config::load_string(read_string_attribute(root, "config"), path + ":/config");
  } catch (const Error& e) {
    node.error("init file " + path + ": its stored config does not parse (" + e.what() +
               "), so its architecture cannot be compared; pass --force to load its weights anyway");
  }
  ArchitectureCheck check;
  check.registries = options.registries ? options.registries : &registries();
  check.build = options.build;
  check.path = ex.path.get();
  check.compare_path = of_the_model;
  const auto pre = ex.loss->preconditioning();
  check.preconditioning = with_preconditioning ? pre.get() : nullptr;
  check.sample_shape = ex.dataset->sample_shape();
  const auto diffs =
      architecture_differences(*stored, ex.config, stored_network_key, network_node, root, weights, check);
  if (!diffs.empty())
    node.error("init file " + path + " was trained with another architecture: " + describe(diffs) +
               "; pass --force to load its weights anyway");
}

/// Runs `load`, turning its failures into a ConfigError at `node` that names the file once and
/// ends with `hint`.
template <class F>
void at_node(const ConfigNode& node, const std::string& path, const std::string& hint, F load) {
  try {
    load();
  } catch (const ConfigError&) {
    throw;
  } catch (const H5::Exception& e) {
    node.error("init file " + path + ": unreadable (" + e.getDetailMsg() + ")");
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.rfind(path, 0) != 0) msg = path + ": " + msg;
    node.error("init file " + msg + hint);
  }
}

bool valid_slot_name(const std::string& s) {
  if (s.empty()) return false;
  for (const char c : s)
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_'))
      return false;
  return true;
}

}  // namespace

void load_init(Experiment& ex, const ConfigNode& node, const std::function<std::shared_ptr<Network>()>& make_network,
               const InitOptions& options) {
  const std::string path = ex.init;
  H5::H5File file = open_results(path, node);
  // The preconditioning matters when the loaded weights are sampled as they are; a run that
  // trains may start from weights read another way (consistency distillation starts its student
  // from the teacher: cd_moons.yaml).
  check_architecture(file, path, "network", ex.config.root().at("network"), "model", ex, true, ex.train.steps == 0,
                     options, node);
  for (const char* group : {"model", "ema"}) check_finite(file.openGroup("/"), group, path, node);
  const std::string network_hint = " (does the network match the one that was trained?)";
  at_node(node, path, network_hint, [&] {
    const H5::Group root = file.openGroup("/");
    ex.network().load(h5_open_group(root, "model"));
    const bool file_ema = h5_exists(root, "ema");
    if (ex.models.has("ema")) {
      if (file_ema) {
        ex.models.get("ema").load(h5_open_group(root, "ema"));
        ex.init_ema = true;
      } else {
        ex.models.get("ema").copy_parameters_from(ex.network());
      }
    } else if (file_ema && ex.train.steps == 0) {
      std::shared_ptr<Network> ema = make_network();
      ema->load(h5_open_group(root, "ema"));
      ex.models.add({"ema", ema, true, path});
      ex.init_ema = true;
    }
  });
  at_node(node, path, "", [&] {
    const H5::Group root = file.openGroup("/");
    if (!h5_exists(root, "data")) throw Error(path + " has no /data (the codec's statistics)");
    ex.codec->load(h5_open_group(root, "data"), ex.dataset->sample_shape());
    ex.codec_loaded = true;
  });
}

void read_model_slots(const ConfigNode& slots, const ConfigNode& model_network, const NetworkFactory& make_network,
                      Experiment& ex, const InitOptions& options) {
  for (const std::string& name : slots.keys()) {
    const ConfigNode s = slots.at(name);
    if (!valid_slot_name(name))
      s.error("a slot name is lower-case letters, digits and '_' (it names the group /models/" + name + ")");
    if (name == "model" || name == "ema")
      s.error("'" + name + "' is the trained model's own slot; name this one differently");
    const auto net_node = s.find("network");
    ModelSlot slot{name, make_network(net_node ? *net_node : model_network), false, ""};
    const std::string from = s.get_string("from", "model");
    if (s.has("init")) {
      slot.init = s.get_string("init");
      const ConfigNode where = s.at("init");
      const H5::H5File file = open_results(slot.init, where);
      const std::string group = from == "model" || from == "ema" ? from : "models/" + from;
      if (h5_exists(file.openGroup("/"), group)) {
        // The file's network for that group: its own slot's `network:` if it declared one.
        std::string stored_key = "network";
        if (group.rfind("models/", 0) == 0) {
          const H5::Group root = file.openGroup("/");
          try {
            const Config stored = Config::load_string(read_string_attribute(root, "config"));
            if (stored.root().has("models") && stored.root().at("models").has(from) &&
                stored.root().at("models").at(from).has("network"))
              stored_key = "models." + from + ".network";
          } catch (const Error&) {
            // check_architecture says so
          }
        }
        check_architecture(file, slot.init, stored_key, net_node ? *net_node : model_network, group, ex, false, false,
                           options, where);
        check_finite(file.openGroup("/"), group, slot.init, where);
      }
      at_node(where, slot.init, " (does the slot's network match the one in the file?)", [&] {
        const H5::Group root = file.openGroup("/");
        if (!h5_exists(root, group)) throw Error(slot.init + " has no /" + group);
        slot.network->load(h5_open_group(root, group));  // names the first parameter that differs
      });
    } else if (s.has("from")) {
      s.at("from").error("`from` picks the group of an `init` file; this slot has no `init`");
    }
    slot.frozen = s.get_bool("frozen", !slot.init.empty());
    // No slot but `model` is trained by the optimiser: none needs gradients.
    slot.network->freeze();
    ex.models.add(std::move(slot));
  }
}

}  // namespace diffusion

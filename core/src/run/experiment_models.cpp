#include "diffusion/run/experiment_models.hpp"

#include <cctype>
#include <filesystem>

#include "diffusion/io/hdf5_io.hpp"

namespace diffusion {
namespace {

/// The results file at `path` opened read-only, or a ConfigError at `node` saying what it is not.
H5::H5File open_results(const std::string& path, const ConfigNode& node) {
  if (path.empty()) node.fail("the path of a results file (.h5)");
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) node.error("init file " + path + " does not exist");
  if (std::filesystem::is_directory(path, ec)) node.error("init file " + path + " is a folder, not a results file");
  H5::Exception::dontPrint();
  try {
    if (!H5::H5File::isHdf5(path)) node.error("init file " + path + " is not an HDF5 results file");
    H5::H5File file(path, H5F_ACC_RDONLY);
    const H5::Group root = file.openGroup("/");
    if (!has_attribute(root, "config") || !h5_exists(root, "model")) {
      const std::string status = has_attribute(root, "status") ? read_string_attribute(root, "status") : "";
      node.error("init file " + path + " is not a results file with a trained model (" +
                 (status.empty() ? std::string("no config or /model") : "status=" + status + ", no /model") + ")");
    }
    return file;
  } catch (const H5::Exception& e) {
    node.error("init file " + path + ": unreadable (" + e.getDetailMsg() + ")");
  }
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

void load_init(Experiment& ex, const ConfigNode& node, const std::function<std::shared_ptr<Network>()>& make_network) {
  const std::string path = ex.init;
  H5::H5File file = open_results(path, node);
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
                      Experiment& ex) {
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

#include "diffusion/run/checkpoint.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "diffusion/io/file_seal.hpp"
#include "diffusion/io/h5_memory_file.hpp"
#include "diffusion/io/hdf5_io.hpp"

namespace diffusion {
namespace fs = std::filesystem;

namespace {

constexpr const char* kCheckpointVersion = "2";

// ---- config flattening ----

void flatten(const YAML::Node& n, const std::string& path, std::map<std::string, std::string>& out) {
  const auto key = [&](const std::string& k) { return path.empty() ? k : path + "." + k; };
  if (n.IsMap()) {
    if (n.size() == 0) out[path] = "{}";
    for (const auto& kv : n) flatten(kv.second, key(kv.first.as<std::string>()), out);
  } else if (n.IsSequence()) {
    if (n.size() == 0) out[path] = "[]";
    for (std::size_t i = 0; i < n.size(); ++i) flatten(n[i], key(std::to_string(i)), out);
  } else if (n.IsScalar()) {
    out[path] = n.Scalar();
  } else {
    out[path] = "~";
  }
}

std::map<std::string, std::string> flat(const Config& c) {
  std::map<std::string, std::string> m;
  flatten(c.root().yaml(), "", m);
  return m;
}

bool parse_number(const std::string& s, double& v) {
  if (s.empty()) return false;
  char* end = nullptr;
  v = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

/// Scalars equal as text, or as numbers (so "1.0e-3" and "0.001" are the same learning rate).
bool same_value(const std::string& a, const std::string& b) {
  if (a == b) return true;
  double x, y;
  return parse_number(a, x) && parse_number(b, y) && x == y;
}

// ---- small HDF5 helpers this file needs beyond hdf5_io ----

void write_rng(const H5::Group& g, const std::string& name, const Rng::State& st) {
  std::vector<std::uint64_t> v(st.s.begin(), st.s.end());
  v.push_back(st.seed);
  write_uint64_vector(g, name, v);
}

Rng::State read_rng(const H5::Group& g, const std::string& name) {
  const auto v = read_uint64_vector(g, name);
  if (v.size() != 5) throw Error(h5_location(g, name) + ": expected 5 values (state and seed)");
  Rng::State st;
  std::copy(v.begin(), v.begin() + 4, st.s.begin());
  st.seed = v[4];
  return st;
}

/// Read every dataset under g in full: a file truncated after it was written fails here even
/// when its superblock and root attributes still read (a sealed file fails its seal first; this
/// is what catches an unsealed one). The groups of weights and optimiser state must be finite
/// (checkpoints are written only from finite weights); the loss log may hold NaN (a time bin no
/// sample fell in). Returns the first non-finite dataset's path, "" if none.
std::string read_all(const H5::Group& g) {
  const bool top = g.getObjName() == "/";
  for (hsize_t i = 0; i < g.getNumObjs(); ++i) {
    const std::string name = g.getObjnameByIdx(i);
    const H5G_obj_t type = g.getObjTypeByIdx(i);
    if (type == H5G_GROUP) {
      const bool weights = top && (name == "model" || name == "ema" || name == "models" || name == "optimizer");
      if (std::string bad = weights ? h5_first_nonfinite(g.openGroup(name)) : read_all(g.openGroup(name)); !bad.empty())
        return bad;
    } else if (type == H5G_DATASET) {
      H5::DataSet ds = g.openDataSet(name);
      H5::DataType t = ds.getDataType();
      const std::size_t bytes = ds.getSpace().getSimpleExtentNpoints() * t.getSize();
      std::vector<char> buf(std::max<std::size_t>(bytes, 1));
      if (bytes) ds.read(buf.data(), t);
    }
  }
  return "";
}

std::string step_name(std::int64_t step) { return "step_" + std::to_string(step) + ".h5"; }

/// The slots a checkpoint carries besides the model and its EMA: those the run changes.
template <class F>
void for_changed_slots(const Models& models, F f) {
  for (const ModelSlot& s : models.slots())
    if (s.name != "model" && s.name != "ema" && !s.frozen) f(s);
}

void write_log(const H5::Group& root, const LossLog::State& log) {
  write_attribute(root, "window", log.window);
  write_attribute(root, "window_n", log.window_n);
  write_attribute(root, "last_finite", log.last_finite);
  write_attribute(root, "final_loss", log.final_loss);
  const H5::Group train = h5_require_group(root, "train");
  write_int64_vector(train, "step", log.steps);
  write_double_vector(train, "loss", log.losses);
  write_double_vector(train, "loss_by_t", log.by_t);
  write_double_vector(train, "bin_sum", log.bin_sum);
  write_double_vector(train, "bin_count", log.bin_count);
}

LossLog::State read_log(const H5::Group& root) {
  LossLog::State log;
  log.window = read_double_attribute(root, "window");
  log.window_n = read_int_attribute(root, "window_n");
  log.last_finite = read_double_attribute(root, "last_finite");
  log.final_loss = read_double_attribute(root, "final_loss");
  const H5::Group train = h5_open_group(root, "train");
  log.steps = read_int64_vector(train, "step");
  log.losses = read_double_vector(train, "loss");
  log.by_t = read_double_vector(train, "loss_by_t");
  log.bin_sum = read_double_vector(train, "bin_sum");
  log.bin_count = read_double_vector(train, "bin_count");
  return log;
}

}  // namespace

std::uint64_t fnv1a64(std::string_view text) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string canonical_config(const Config& config) {
  std::string s;
  for (const auto& [k, v] : flat(config)) s += k + "=" + v + "\n";
  return s;
}

std::uint64_t config_hash(const Config& config) { return fnv1a64(canonical_config(config)); }

namespace {
std::vector<ConfigDifference> differences(const std::map<std::string, std::string>& a,
                                          const std::map<std::string, std::string>& b) {
  std::vector<ConfigDifference> diffs;
  for (const auto& [k, v] : a) {
    const auto it = b.find(k);
    if (it == b.end()) diffs.push_back({k, v, "(absent)"});
    else if (!same_value(v, it->second)) diffs.push_back({k, v, it->second});
  }
  for (const auto& [k, v] : b)
    if (!a.count(k)) diffs.push_back({k, "(absent)", v});
  std::sort(diffs.begin(), diffs.end(), [](const auto& x, const auto& y) { return x.key < y.key; });
  return diffs;
}
}  // namespace

std::vector<ConfigDifference> config_differences(const Config& before, const Config& after) {
  return differences(flat(before), flat(after));
}

std::vector<ConfigDifference> config_differences(const ConfigNode& before, const ConfigNode& after) {
  std::map<std::string, std::string> a, b;
  flatten(before.yaml(), after.path(), a);
  flatten(after.yaml(), after.path(), b);
  return differences(a, b);
}

std::string describe(const std::vector<ConfigDifference>& diffs) {
  std::string s;
  for (const auto& d : diffs) {
    if (!s.empty()) s += ", ";
    s += d.key + " (" + d.before + " -> " + d.after + ")";
  }
  return s;
}

std::string checkpoint_dir_for(const std::string& out_path) { return out_path + ".ckpt"; }

std::vector<std::pair<std::int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<std::int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step_", 0) != 0 || name.size() <= 8 || name.substr(name.size() - 3) != ".h5") continue;
    const std::string digits = name.substr(5, name.size() - 8);
    if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
    found.emplace_back(std::stoll(digits), e.path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

namespace {
CheckpointInfo info_of(const std::string& path, const H5::Group& root) {
  if (!has_attribute(root, "complete") || read_int_attribute(root, "complete") != 1)
    throw Error("no complete=1 marker (the write did not finish)");
  CheckpointInfo info;
  info.path = path;
  info.step = read_int_attribute(root, "step");
  info.config_text = read_string_attribute(root, "config");
  info.config_hash = std::stoull(read_string_attribute(root, "config_hash"), nullptr, 16);
  return info;
}

/// A checkpoint that may be used: its seal matches its bytes (file_seal.hpp), it carries the
/// complete=1 marker, every dataset reads back and its weights are finite. Throws Error (a
/// CorruptFile for a broken seal) saying why not, without the path.
struct CheckedCheckpoint {
  H5::H5File file;
  CheckpointInfo info;
};
CheckedCheckpoint open_checked(const std::string& path) {
  CheckedCheckpoint c;
  try {
    c.file = h5_open_verified(path).file;
  } catch (const Error& e) {
    // h5_open_verified names the path first; the callers name it themselves.
    std::string msg = e.what();
    if (msg.rfind(path + ": ", 0) == 0) msg = msg.substr(path.size() + 2);
    if (dynamic_cast<const CorruptFile*>(&e)) throw CorruptFile("corrupt: " + msg);
    throw Error(msg);
  }
  try {
    const H5::Group root = c.file.openGroup("/");
    c.info = info_of(path, root);
    if (const std::string bad = read_all(root); !bad.empty())
      throw Error("non-finite values in " + bad + " (checkpoints are written only from finite weights)");
  } catch (const H5::Exception& e) {
    throw Error("unreadable (" + e.getDetailMsg() + ")");
  }
  return c;
}
}  // namespace

CheckpointInfo read_checkpoint_info(const std::string& path) {
  H5::Exception::dontPrint();
  try {
    return open_checked(path).info;
  } catch (const Error& e) {
    throw Error("checkpoint " + path + ": " + e.what());
  }
}

std::optional<CheckpointInfo> find_latest_checkpoint(const std::string& dir,
                                                     std::vector<std::string>* skipped) {
  H5::Exception::dontPrint();
  const auto all = list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      CheckpointInfo info = open_checked(it->second).info;
      if (info.step != it->first) throw Error("its step attribute says " + std::to_string(info.step));
      return info;
    } catch (const H5::Exception& e) {
      if (skipped) skipped->push_back(it->second + ": unreadable (" + e.getDetailMsg() + ")");
    } catch (const std::exception& e) {
      if (skipped) skipped->push_back(it->second + ": " + e.what());
    }
  }
  return std::nullopt;
}

std::string write_checkpoint(const std::string& dir, const TrainingState& state, const Models& models,
                             const EMA* ema, const Optimizer& optimizer, const Config& config, int keep) {
  H5::Exception::dontPrint();
  fs::create_directories(dir);
  const std::string final_path = (fs::path(dir) / step_name(state.step)).string();
  // Same folder as the final name, so rename() is atomic (one file system).
  const std::string temp_path =
      (fs::path(dir) / ("." + step_name(state.step) + "." + std::to_string(::getpid()) + ".tmp")).string();
  try {
    // Built in memory and written in one piece: a full disk fails the write, never HDF5's
    // own closes (see h5_memory_file.hpp).
    H5::H5File file = h5_create_in_memory(temp_path);
    const H5::Group root = file.openGroup("/");
    write_attribute(root, "version", kCheckpointVersion);
    write_attribute(root, "step", state.step);
    write_attribute(root, "config", config.dump());
    std::ostringstream hash;
    hash << std::hex << config_hash(config);
    write_attribute(root, "config_hash", hash.str());
    write_log(root, state.log);
    models.get("model").save(h5_require_group(root, "model"));
    if (ema) ema->save(h5_require_group(root, "ema"));
    for_changed_slots(models, [&](const ModelSlot& s) { s.network->save(h5_require_group(root, "models/" + s.name)); });
    optimizer.save_state(h5_require_group(root, "optimizer"));
    const H5::Group rng = h5_require_group(root, "rng");
    write_rng(rng, "data", state.data_rng);
    write_rng(rng, "train", state.train_rng);
    // Last: a reader that finds the marker knows everything before it was written.
    write_attribute(root, "complete", std::int64_t{1});
    h5_save_image(file, temp_path);  // fsync'ed
  } catch (const H5::Exception& e) {
    std::remove(temp_path.c_str());
    throw Error("checkpoint " + final_path + ": writing failed: " + e.getDetailMsg());
  } catch (const Error& e) {
    std::remove(temp_path.c_str());
    throw Error("checkpoint " + final_path + ": " + e.what());
  } catch (...) {
    std::remove(temp_path.c_str());
    throw;
  }
  if (std::rename(temp_path.c_str(), final_path.c_str()) != 0) {
    std::remove(temp_path.c_str());
    throw Error("checkpoint " + final_path + ": cannot rename " + temp_path + " into place");
  }
  fsync_folder(dir);
  // Prune only after the new one is durable, so there is always at least one valid checkpoint.
  const auto all = list_checkpoints(dir);
  const std::size_t n_keep = static_cast<std::size_t>(std::max(keep, 1));
  for (std::size_t i = 0; i + n_keep < all.size(); ++i) std::remove(all[i].second.c_str());
  return final_path;
}

CheckpointInfo read_checkpoint(const std::string& path, TrainingState& state, Models& models, EMA* ema,
                               Optimizer& optimizer) {
  H5::Exception::dontPrint();
  CheckedCheckpoint checked;
  try {
    checked = open_checked(path);
  } catch (const Error& e) {
    throw Error("checkpoint " + path + ": " + e.what());
  }
  try {
    const H5::Group root = checked.file.openGroup("/");
    const CheckpointInfo& info = checked.info;
    TrainingState st;
    st.step = info.step;
    if (!has_attribute(root, "version") || read_string_attribute(root, "version") != kCheckpointVersion)
      throw Error("checkpoint " + path + " was written by another version of the toolkit (checkpoint version " +
                  (has_attribute(root, "version") ? read_string_attribute(root, "version") : std::string("?")) +
                  ", expected " + kCheckpointVersion + ")");
    st.log = read_log(root);
    const H5::Group rng = h5_open_group(root, "rng");
    st.data_rng = read_rng(rng, "data");
    st.train_rng = read_rng(rng, "train");
    if (st.log.steps.size() != st.log.losses.size())
      throw Error("checkpoint " + path + ": /train/step and /train/loss differ in length");
    if (ema && !h5_exists(root, "ema"))
      throw Error("checkpoint " + path + " has no /ema but the experiment keeps an EMA");
    // Everything small is read; now the weights (each load checks before it assigns).
    models.get("model").load(h5_open_group(root, "model"));
    if (ema) ema->load(h5_open_group(root, "ema"));
    for_changed_slots(models, [&](const ModelSlot& s) {
      if (!h5_exists(root, "models/" + s.name)) throw Error("checkpoint " + path + " has no /models/" + s.name);
      s.network->load(h5_open_group(root, "models/" + s.name));
    });
    optimizer.load_state(h5_open_group(root, "optimizer"));
    state = std::move(st);
    return info;
  } catch (const H5::Exception& e) {
    throw Error("checkpoint " + path + ": " + e.getDetailMsg());
  }
}

void remove_checkpoints(const std::string& dir, std::int64_t after_step) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  for (const auto& [step, path] : list_checkpoints(dir))
    if (step > after_step) fs::remove(path, ec);
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".step_", 0) == 0 && name.size() > 4 && name.substr(name.size() - 4) == ".tmp")
      fs::remove(e.path(), ec);
  }
}

namespace {
fs::path set_aside_dir(const std::string& dir) { return fs::path(dir) / ".replaced"; }
}  // namespace

void set_aside_checkpoints(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  const fs::path aside = set_aside_dir(dir);
  fs::remove_all(aside, ec);  // a run that died between set-aside and discard: superseded now
  fs::create_directory(aside, ec);
  if (ec) throw Error("checkpoint folder " + dir + ": cannot create " + aside.string() + ": " + ec.message());
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    fs::rename(e.path(), aside / e.path().filename(), ec);
    if (ec) throw Error("checkpoint folder " + dir + ": cannot set aside " + e.path().string() + ": " + ec.message());
  }
}

void discard_set_aside_checkpoints(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(set_aside_dir(dir), ec);
}

}  // namespace diffusion

// The run's memory estimate and the metrics' size checks (memory_estimate.hpp for the model).
#include "diffusion/run/memory_estimate.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <ostream>
#include <sstream>

namespace diffusion {
namespace {

constexpr double kFloat = sizeof(float);
constexpr double kProcessBytes = 64.0 * (1 << 20);  // libraries, HDF5, thread stacks, the pools' slack

/// Activations per row of a network: for every weight of shape (out, in, ...), out + in, once
/// per spatial position of the data (`positions`).
double activations_per_row(const Network& net, double positions) {
  double a = 0;
  for (const auto& [name, p] : net.named_parameters()) {
    const Shape s = p.shape();
    if (s.size() >= 2) a += double(s[0] + s[1]) * (s.size() > 2 ? positions : 1.0);
  }
  return a;
}

/// Spatial positions of a sample: 1 for vectors (D,), H x W for (C, H, W).
double positions_of(const Shape& sample) {
  return sample.size() >= 2 ? double(numel(sample)) / double(sample[0]) : 1.0;
}

std::string str(double x) {
  std::ostringstream s;
  s << std::fixed;
  s.precision(x == std::floor(x) ? 0 : 1);
  s << x;
  return s.str();
}

/// The config key of sampler i, in the order read_samplers reads them: `sampler:` first, then
/// the items of `samplers:`.
std::string sampler_key(const ConfigNode& root, std::size_t i) {
  if (root.has("sampler")) return i == 0 ? "sampler" : "samplers." + std::to_string(i - 1);
  return "samplers." + std::to_string(i);
}

/// The node at a dotted key, or its deepest ancestor present (a key left at its default).
ConfigNode nearest_node(const ConfigNode& root, const std::string& key) {
  ConfigNode node = root;
  std::size_t start = 0;
  while (start <= key.size()) {
    const std::size_t dot = std::min(key.find('.', start), key.size());
    const std::string part = key.substr(start, dot - start);
    start = dot + 1;
    if (node.is_sequence()) {
      const std::size_t index = std::stoul(part);
      if (index >= node.size()) break;
      node = node.item(index);
    } else if (node.is_map()) {
      const auto child = node.find(part);
      if (!child) break;
      node = *child;
    } else {
      break;
    }
  }
  return node;
}

/// Reads "Key:   12345 kB" from /proc/meminfo; negative when absent.
double meminfo_bytes(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string name;
  double kb = 0;
  std::string unit;
  while (in >> name >> kb) {
    std::getline(in, unit);
    if (name == key + ":") return kb * 1024.0;
  }
  return -1;
}

/// The first number in a file ("max" and unreadable files: negative).
double file_number(const std::string& path) {
  std::ifstream in(path);
  double x = -1;
  if (!(in >> x)) return -1;
  return x;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The estimate

double MemoryEstimate::total() const {
  double sum = 0, stage = 0;
  for (const MemoryTerm& t : held) sum += t.bytes;
  for (const MemoryTerm& t : stages) stage = std::max(stage, t.bytes);
  return sum + stage;
}

const MemoryTerm& MemoryEstimate::largest() const {
  const MemoryTerm* best = nullptr;
  for (const auto* list : {&held, &stages})
    for (const MemoryTerm& t : *list)
      if (!best || t.bytes > best->bytes) best = &t;
  if (!best) throw Error("MemoryEstimate::largest: an empty estimate");
  return *best;
}

std::string MemoryEstimate::describe() const {
  std::string s;
  const auto add = [&s](const MemoryTerm& t) {
    s += (s.empty() ? "" : "; ") + t.what + " " + format_bytes(t.bytes) + " (" + t.formula + ")";
  };
  for (const MemoryTerm& t : held) add(t);
  for (const MemoryTerm& t : stages) add(t);
  return s;
}

MemoryEstimate estimate_memory(const Experiment& ex) {
  MemoryEstimate e;
  const ConfigNode root = ex.config.root();
  const Shape data_shape = ex.dataset->sample_shape();
  const Shape model_shape = ex.codec->encoded_shape(data_shape);
  const double d_data = double(numel(data_shape)), d_model = double(numel(model_shape));
  const double positions = positions_of(model_shape);

  e.held.push_back({"the process", "", "libraries and buffers", kProcessBytes, 0});

  // Parameters: the trained network with its gradient, Adam's two moments and one gradient per
  // shard; every other slot (EMA, target, teacher) its weights alone.
  for (const ModelSlot& slot : ex.models.slots()) {
    const double p = double(slot.network->num_parameters());
    const bool trained = slot.name == "model";
    const double copies = trained ? 4.0 + double(ex.train.shards) : 1.0;
    e.held.push_back({"parameters of " + slot.name, slot.name == "model" ? "network" : "models." + slot.name,
                      str(p) + " x " + str(copies) + " floats", p * copies * kFloat, 0});
  }

  // Training: the batch through the network, forward and backward, and through each other
  // network the loss reads (forward only).
  const double a_model = activations_per_row(ex.network(), positions);
  if (ex.train.steps > 0) {
    double per_row = a_model * 2 * kFloat + d_model * 8 * kFloat;
    std::string formula = str(double(ex.train.batch_size)) + " rows x (" + str(a_model) + " activations x 2 + " +
                          str(d_model) + " x 8) floats";
    for (const std::string& slot : ex.loss->required_models()) {
      if (!ex.models.has(slot) || slot == "model") continue;
      const double a = activations_per_row(ex.models.get(slot), positions);
      per_row += a * kFloat;
      formula += " + " + str(a) + " floats of " + slot;
    }
    const double rows = double(ex.train.batch_size);
    e.stages.push_back({"training activations", "train.batch_size", formula, rows * per_row, per_row});
  }

  // Sampling: one sampler at a time holds its whole set in one forward pass (or `batch:` rows of
  // it); every sampler's samples (each repeat's) are kept for the metrics, encoded and decoded.
  double kept = 0, kept_largest = 0, kept_per_sample = 0;  // the largest sampler's share names the key
  std::string kept_key;
  for (std::size_t i = 0; i < ex.samplers.size(); ++i) {
    const SamplerSpec& s = ex.samplers[i];
    const std::string key = sampler_key(root, i) + ".n";
    const double n = double(s.n);
    const bool chunked = s.batch > 0 && s.batch < s.n;
    double per_sample = (chunked ? 0.0 : a_model * kFloat) + d_model * (8.0 + 2.0 * double(s.trajectory)) * kFloat;
    std::string formula = str(n) + " samples x (" + (chunked ? "" : str(a_model) + " activations + ") + str(d_model) +
                          " x " + str(8.0 + 2.0 * double(s.trajectory)) + ") floats";
    for (const std::string& slot : s.sampler->required_models()) {
      if (!ex.models.has(slot) || slot == "model") continue;
      const double a = activations_per_row(ex.models.get(slot), positions);
      per_sample += a * kFloat;
      formula += " + " + str(a) + " floats of " + slot;
    }
    double bytes = n * per_sample;
    if (chunked) {  // the forward pass holds `batch` rows at a time; the state holds all n
      const double rows = double(s.batch);
      bytes += rows * a_model * kFloat;
      formula += " + " + str(rows) + " rows (batch) x " + str(a_model) + " activations floats";
    }
    e.stages.push_back({"sampling with " + s.name, key, formula, bytes, per_sample});
    const double per_kept = double(s.repeats) * (d_model + d_data) * kFloat;
    kept += n * per_kept;
    if (n * per_kept > kept_largest) kept_largest = n * per_kept, kept_key = key, kept_per_sample = per_kept;
  }
  if (kept > 0)
    e.held.push_back({"kept samples", kept_key, "every sampler's n x repeats x " + str(d_model + d_data) + " floats",
                      kept, kept_per_sample});

  // The reference and the floor's fresh draws.
  const std::vector<MetricComparison> comparisons = metric_comparisons(ex);
  std::size_t floor_n = 0;
  for (const MetricComparison& c : comparisons)
    if (c.group == "data") floor_n = c.n;
  const double ref = double(ex.evaluation.reference_n) * d_data * kFloat;
  const double floor = double(ex.evaluation.floor_draws) * double(floor_n) * d_data * kFloat;
  // reference.n when given, else it is the largest sampler's n.
  std::string ref_key = "reference.n";
  const auto ref_node = root.find("reference");
  if (!(ref_node && ref_node->has("n")))
    for (std::size_t i = 0; i < ex.samplers.size(); ++i)
      if (ex.samplers[i].n == ex.evaluation.reference_n) ref_key = sampler_key(root, i) + ".n";
  if (ref + floor > 0)
    e.held.push_back({"reference data", ref_key,
                      str(double(ex.evaluation.reference_n)) + " points + " + str(double(ex.evaluation.floor_draws)) +
                          " draws of " + str(double(floor_n)) + ", x " + str(d_data) + " floats",
                      ref + floor, (1.0 + double(ex.evaluation.floor_draws)) * d_data * kFloat});

  // Metrics: one at a time, each at its largest comparison.
  for (const MetricSpec& m : ex.metrics) {
    if (m.metric->of_model()) continue;
    const MetricComparison* largest = nullptr;
    for (const MetricComparison& c : comparisons)
      if (!largest || c.n > largest->n) largest = &c;
    if (!largest) continue;
    const std::size_t n = largest->n, dim = std::size_t(d_data);
    const double bytes = double(m.metric->memory_bytes(n, n, dim));
    e.stages.push_back({"metric " + m.name, largest->key, str(double(n)) + " points of " + str(d_data) + " floats",
                        bytes, n > 0 ? bytes / double(n) : 0});
  }
  return e;
}

// ---------------------------------------------------------------------------------------------
// What the machine has

AvailableMemory available_memory() {
  AvailableMemory m{meminfo_bytes("MemAvailable"), "MemAvailable in /proc/meminfo"};
  if (m.bytes < 0) m = {meminfo_bytes("MemFree"), "MemFree in /proc/meminfo"};
  // cgroup v2, then v1: the limit of this process's group less what the group already uses.
  const std::pair<const char*, const char*> groups[] = {
      {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
      {"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"}};
  for (const auto& [limit_file, usage_file] : groups) {
    const double limit = file_number(limit_file), used = file_number(usage_file);
    if (limit > 0 && used >= 0 && limit < 1e18 && (m.bytes < 0 || limit - used < m.bytes)) {
      m = {std::max(0.0, limit - used), std::string("the cgroup limit ") + limit_file + " less its use"};
      break;
    }
  }
  return m;
}

std::uint64_t parse_memory_size(const std::string& text, const std::string& option) {
  const auto fail = [&]() -> std::uint64_t {
    throw ConfigError("<command line>", 0, 0, "",
                      "expected a memory size such as 8G, 500M or 1.5G (binary units), got '" + text + "'",
                      option + " " + text);
  };
  std::size_t end = 0;
  double value = 0;
  try {
    value = std::stod(text, &end);
  } catch (const std::exception&) {
    return fail();
  }
  if (!(value > 0) || !std::isfinite(value) || text.find_first_of("+-") != std::string::npos) return fail();
  std::string unit = text.substr(end);
  for (char& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
  if (unit.size() > 1 && unit.back() == 'I') unit.pop_back();
  const std::string units = "KMGT";
  double scale = 1;
  if (unit == "B" || unit.empty()) {
    scale = 1;
  } else if (unit.size() == 1 && units.find(unit[0]) != std::string::npos) {
    scale = std::pow(1024.0, double(units.find(unit[0]) + 1));
  } else {
    return fail();
  }
  const double bytes = value * scale;
  if (bytes < 1 || bytes > 1.8e19) return fail();
  return static_cast<std::uint64_t>(bytes);
}

std::string format_bytes(double bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 5) bytes /= 1024.0, ++u;
  char buf[64];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

void check_memory(const Experiment& ex, std::uint64_t max_memory, std::ostream* log) {
  const MemoryEstimate e = estimate_memory(ex);
  AvailableMemory limit{double(max_memory), "--max-memory"};
  if (max_memory == 0) limit = available_memory();
  const double total = e.total();
  if (log)
    *log << "memory: estimated " << format_bytes(total) << " of " << format_bytes(limit.bytes) << " ("
         << limit.source << ")\n";
  if (limit.bytes < 0 || total <= limit.bytes) return;
  const MemoryTerm& big = e.largest();
  std::string msg = "the run needs an estimated " + format_bytes(total) + " of memory, more than the " +
                    format_bytes(limit.bytes) + " it may use (" + limit.source + "); the largest part is " + big.what +
                    ", " + format_bytes(big.bytes) + " (" + big.formula + ")";
  if (!big.key.empty() && big.per_unit > 0) {
    // Every counted term that scales with the key (sampler.n sets the sampling stage, the kept
    // samples and the reference) grows with it; the rest stays.
    double per_unit = 0, scaling = 0, stage_max = 0;
    const MemoryTerm* stage = nullptr;
    for (const MemoryTerm& t : e.stages)
      if (t.bytes > stage_max) stage_max = t.bytes, stage = &t;
    for (const MemoryTerm& t : e.held)
      if (t.key == big.key) per_unit += t.per_unit, scaling += t.bytes;
    if (stage && stage->key == big.key) per_unit += stage->per_unit, scaling += stage->bytes;
    const double fits = std::floor((limit.bytes - (total - scaling)) / per_unit);
    msg += fits >= 1 ? "; lower " + big.key + " to at most about " + str(fits)
                     : "; lower " + big.key + " and the rest of the run";
    if (big.what.rfind("sampling with ", 0) == 0 && big.key.size() > 2 && big.key.compare(big.key.size() - 2, 2, ".n") == 0)
      msg += " (or evaluate the network on fewer samples at a time: " + big.key.substr(0, big.key.size() - 2) + ".batch)";
  } else if (!big.key.empty()) {
    msg += "; make " + big.key + " smaller";
  }
  msg += max_memory ? ", or raise --max-memory if the estimate is too cautious"
                    : ", or pass --max-memory SIZE if the estimate is too cautious";
  const ConfigNode root = ex.config.root();
  nearest_node(root, big.key.empty() ? "train" : big.key).error(msg);
}

// ---------------------------------------------------------------------------------------------
// The metrics' sizes

std::vector<MetricComparison> metric_comparisons(const Experiment& ex) {
  std::vector<MetricComparison> out;
  const ConfigNode root = ex.config.root();
  const std::size_t ref_n = ex.evaluation.reference_n;
  MetricComparison floor{"data", 0, "reference.n"};
  for (std::size_t i = 0; i < ex.samplers.size(); ++i) {
    const SamplerSpec& s = ex.samplers[i];
    const std::size_t n = std::min(s.n, ref_n);
    const std::string key = s.n <= ref_n ? sampler_key(root, i) + ".n" : "reference.n";
    out.push_back({s.name, n, key});
    if (n > floor.n) floor.n = n, floor.key = key;
  }
  if (floor.n == 0) floor.n = ref_n;
  const bool sample_metrics = std::any_of(ex.metrics.begin(), ex.metrics.end(),
                                          [](const MetricSpec& m) { return !m.metric->of_model(); });
  if (floor.n > 0 && sample_metrics) out.push_back(floor);
  return out;
}

void check_metric_sizes(const Experiment& ex) {
  const std::size_t dim = numel(ex.dataset->sample_shape());
  const ConfigNode root = ex.config.root();
  for (const MetricComparison& c : metric_comparisons(ex))
    for (const MetricSpec& m : ex.metrics) {
      if (m.metric->of_model()) continue;
      try {
        m.metric->check_sizes(c.n, c.n, dim);
      } catch (const ConfigError&) {
        throw;
      } catch (const Error& e) {
        const std::string whose =
            c.group == "data" ? "the metric floor's fresh data" : "sampler " + c.group + "'s samples";
        nearest_node(root, c.key).error(std::string(e.what()) + " (metric " + m.name + ", comparing " + whose +
                                        " with the reference)");
      }
    }
}

}  // namespace diffusion

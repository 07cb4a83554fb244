// report: compare results files side by side.
//
//   report FILE.h5 [FILE.h5 ...] [--csv]
//
// One row per (run, sampler) (one row with sampler '-' for a run without samples), then the
// run's metric floor, the row with sampler `data` (/metrics/data: fresh draws of the data
// scored against the same reference). Columns:
//   file        only when two files carry the same run name
//   run         the run's name attribute (the file stem when it has none)
//   sampler     the sampler's name under /samples (or /metrics)
//   <key.path>  every configuration key whose value is not the same in all readable runs
//               (the resolved YAML flattened to dotted paths; lists as YAML flow text; the
//               run name is left out, it is the run column)
//   final_loss  the last row of /train/loss
//   nfe         the sampler's network evaluations
//   <metric>    each metric found in any run, /metrics/<sampler>/<metric>, in the order of
//               the config's metrics list
//   total_s     total seconds of the run
//   status      complete | failed: <error> | running | interrupted (with steps_completed),
//               corrupt: <reason> for a file whose bytes do not match its seal (file_seal.hpp),
//               "not a results file: checkpoint ..." for a checkpoint (which run, which step,
//               and the command that resumes it), or unreadable: <reason> for a file that is
//               not a readable results file
// Anything a run lacks is '-'. Exit status: 0 when every file was read, 1 when any was
// unreadable, corrupt or not a results file, 2 for a bad command line.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <H5Cpp.h>
#include <boost/program_options.hpp>
#include <yaml-cpp/yaml.h>

#include <diffusion/io/file_seal.hpp>
#include <diffusion/io/h5_memory_file.hpp>
#include <diffusion/io/hdf5_io.hpp>

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace diffusion;

namespace {

struct UsageError : Error {
  using Error::Error;
};

/// What the table needs from one sampler of one run.
struct SamplerInfo {
  std::string name;
  std::optional<long long> nfe;
  std::map<std::string, double> metrics;
  std::vector<std::string> metric_order;  // the config's metrics order, then any others
};

/// One results file, or the reason it could not be read.
struct Run {
  std::string path;
  std::string name;
  bool readable = false;
  std::string status;
  std::map<std::string, std::string> config;  // flattened key path -> value text
  std::optional<double> final_loss;
  std::optional<double> total_seconds;
  std::vector<SamplerInfo> samplers;
};

std::string fmt_g(double v, int digits = 6) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

std::string fmt_f(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

/// A node as one line of YAML flow text ("[128, 128, 128]", "{type: adam, lr: 0.001}").
std::string flow_text(const YAML::Node& node) {
  YAML::Emitter e;
  e.SetMapFormat(YAML::Flow);
  e.SetSeqFormat(YAML::Flow);
  e << node;
  return e.c_str();
}

/// Maps become dotted key paths; scalars and sequences (as flow text) become values.
void flatten(const YAML::Node& node, const std::string& prefix,
             std::map<std::string, std::string>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      const std::string key = kv.first.as<std::string>();
      flatten(kv.second, prefix.empty() ? key : prefix + "." + key, out);
    }
  } else if (node.IsScalar()) {
    out[prefix] = node.Scalar();
  } else if (node.IsNull()) {
    out[prefix] = "null";
  } else {
    out[prefix] = flow_text(node);
  }
}

/// Sampler names in the order the configuration lists them (sampler: or samplers:).
std::vector<std::string> config_sampler_order(const YAML::Node& root) {
  std::vector<std::string> names;
  auto name_of = [](const YAML::Node& s) -> std::string {
    if (!s.IsMap()) return {};
    if (s["name"] && s["name"].IsScalar()) return s["name"].Scalar();
    if (s["type"] && s["type"].IsScalar()) return s["type"].Scalar();
    return {};
  };
  if (!root.IsMap()) return names;
  if (root["samplers"] && root["samplers"].IsSequence())
    for (const auto& s : root["samplers"]) names.push_back(name_of(s));
  else if (root["sampler"])
    names.push_back(name_of(root["sampler"]));
  names.erase(std::remove(names.begin(), names.end(), std::string()), names.end());
  return names;
}

/// Metric names in the order the configuration lists them (names or maps with type/name).
std::vector<std::string> config_metric_order(const YAML::Node& root) {
  std::vector<std::string> names;
  if (!root.IsMap() || !root["metrics"] || !root["metrics"].IsSequence()) return names;
  for (const auto& m : root["metrics"]) {
    if (m.IsScalar()) names.push_back(m.Scalar());
    else if (m.IsMap() && m["name"] && m["name"].IsScalar()) names.push_back(m["name"].Scalar());
    else if (m.IsMap() && m["type"] && m["type"].IsScalar()) names.push_back(m["type"].Scalar());
  }
  return names;
}

/// Names of the groups directly inside g, in link order.
std::vector<std::string> subgroup_names(const H5::Group& g) {
  std::vector<std::string> names;
  for (hsize_t i = 0; i < g.getNumObjs(); ++i) {
    const std::string n = g.getObjnameByIdx(i);
    if (g.childObjType(n) == H5O_TYPE_GROUP) names.push_back(n);
  }
  return names;
}

herr_t collect_error(unsigned, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::vector<std::string>*>(data);
  if (err && err->desc && *err->desc) out->push_back(err->desc);
  return 0;
}

/// Why `path` cannot be opened as an HDF5 file, or an empty string if it can.
std::string probe_hdf5(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return "no such file";
  if (!fs::is_regular_file(path, ec)) return "not a regular file";
  const htri_t is = H5Fis_hdf5(path.c_str());
  if (is == 0) return "not an HDF5 file";
  H5Eclear2(H5E_DEFAULT);
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f >= 0) {
    H5Fclose(f);
    return {};
  }
  // The innermost message is the informative one ("truncated file: eof = ...").
  std::vector<std::string> msgs;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_error, &msgs);
  H5Eclear2(H5E_DEFAULT);
  return msgs.empty() ? "cannot open as HDF5" : msgs.front();
}

/// The run name in a YAML config text ("" if it has none).
std::string config_name(const std::string& text) {
  try {
    const YAML::Node root = YAML::Load(text);
    if (root.IsMap() && root["name"] && root["name"].IsScalar()) return root["name"].Scalar();
  } catch (const YAML::Exception&) {
  }
  return "";
}

/// A training checkpoint (checkpoint.hpp: <out>.ckpt/step_<k>.h5) given in place of a results
/// file: which run and step it is, and how to continue that run.
std::string checkpoint_status(const std::string& path, const H5::H5File& f, std::string& name) {
  const fs::path folder = fs::path(path).parent_path();
  const std::string folder_name = folder.filename().string();
  const bool in_ckpt_folder = folder_name.size() > 5 && folder_name.substr(folder_name.size() - 5) == ".ckpt";
  const std::string out = in_ckpt_folder ? (folder.parent_path() / folder_name.substr(0, folder_name.size() - 5)).string()
                                         : std::string("RUN.h5");
  const std::string configured = has_attribute(f, "config") ? config_name(read_string_attribute(f, "config")) : "";
  name = !configured.empty() ? configured : in_ckpt_folder ? fs::path(out).stem().string() : name;
  std::string status = "not a results file: checkpoint of run " + name + " at step " +
                       std::to_string(read_int_attribute(f, "step"));
  if (!has_attribute(f, "complete")) status += " (incomplete: its write did not finish)";
  status += "; to continue that run: runexp --resume " + out;
  if (!in_ckpt_folder) status += " (the results file whose RUN.h5.ckpt folder holds it)";
  return status;
}

Run read_run(const std::string& path) {
  Run run;
  run.path = path;
  run.name = fs::path(path).stem().string();
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    run.status = "unreadable: no such file";
    return run;
  }
  // The seal first (file_seal.hpp): HDF5 never parses a file whose bytes changed.
  H5::H5File f;
  try {
    f = h5_open_verified(path).file;
  } catch (const CorruptFile& e) {
    const std::string msg = e.what();
    run.status = "corrupt: " + (msg.rfind(path + ": ", 0) == 0 ? msg.substr(path.size() + 2) : msg);
    return run;
  } catch (const Error&) {
    const std::string why = probe_hdf5(path);
    run.status = "unreadable: " + (why.empty() ? std::string("cannot open as HDF5") : why);
    return run;
  }
  try {
    if (!has_attribute(f, "status") && has_attribute(f, "step") && has_attribute(f, "config_hash")) {
      run.status = checkpoint_status(path, f, run.name);
      return run;
    }
    if (!has_attribute(f, "status") && !has_attribute(f, "config")) {
      run.status = "unreadable: not a results file (no status or config attribute)";
      return run;
    }
    if (has_attribute(f, "name")) run.name = read_string_attribute(f, "name");

    std::vector<std::string> order, metric_order;
    if (has_attribute(f, "config")) {
      const YAML::Node root = YAML::Load(read_string_attribute(f, "config"));
      flatten(root, "", run.config);
      run.config.erase("name");  // shown as the run column
      order = config_sampler_order(root);
      metric_order = config_metric_order(root);
    }

    if (h5_exists(f, "train/loss")) {
      const Tensor loss = read_tensor(h5_open_group(f, "train"), "loss");
      if (loss.size() > 0) run.final_loss = static_cast<double>(loss.flat(loss.size() - 1));
    }
    if (has_attribute(f, "total_seconds")) run.total_seconds = read_double_attribute(f, "total_seconds");

    // Samplers: those of the config in its order, then any others found in the file.
    std::vector<std::string> found;
    for (const char* where : {"samples", "metrics"})
      if (h5_exists(f, where))
        for (const auto& n : subgroup_names(h5_open_group(f, where))) found.push_back(n);
    std::vector<std::string> names;
    for (const auto& n : order)
      if (std::find(found.begin(), found.end(), n) != found.end() &&
          std::find(names.begin(), names.end(), n) == names.end())
        names.push_back(n);
    for (const auto& n : found)
      if (n != "data" && std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    if (std::find(found.begin(), found.end(), "data") != found.end()) names.push_back("data");
    for (const auto& n : names) {
      SamplerInfo s;
      s.name = n;
      if (h5_exists(f, "samples/" + n)) {
        const H5::Group g = h5_open_group(f, "samples/" + n);
        if (has_attribute(g, "nfe")) s.nfe = read_int_attribute(g, "nfe");
      }
      if (h5_exists(f, "metrics/" + n)) {
        const H5::Group g = h5_open_group(f, "metrics/" + n);
        for (const auto& m : h5_dataset_names(g)) {
          const Tensor t = read_tensor(g, m);
          if (t.size() == 1) s.metrics[m] = static_cast<double>(t.flat(0));
        }
        for (const auto& m : metric_order)
          if (s.metrics.count(m)) s.metric_order.push_back(m);
        for (const auto& kv : s.metrics)
          if (std::find(s.metric_order.begin(), s.metric_order.end(), kv.first) == s.metric_order.end())
            s.metric_order.push_back(kv.first);
      }
      run.samplers.push_back(std::move(s));
    }

    std::string status = has_attribute(f, "status") ? read_string_attribute(f, "status") : "unknown";
    if (status == "failed" && has_attribute(f, "error"))
      status += ": " + read_string_attribute(f, "error");
    else if ((status == "running" || status == "interrupted") && has_attribute(f, "steps_completed"))
      status += " (step " + std::to_string(read_int_attribute(f, "steps_completed")) + ")";
    run.status = status;
    run.readable = true;
  } catch (const H5::Exception& e) {
    run = Run{path, fs::path(path).stem().string()};
    run.status = "unreadable: " + e.getDetailMsg();
  } catch (const std::exception& e) {
    run = Run{path, fs::path(path).stem().string()};
    run.status = std::string("unreadable: ") + e.what();
  }
  return run;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos && (s.empty() || (s.front() != ' ' && s.back() != ' ')))
    return s;
  std::string q = "\"";
  for (char c : s) {
    if (c == '"') q += '"';
    q += c;
  }
  return q + "\"";
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  return s;
}

int run(int argc, char** argv) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")("csv", "write CSV instead of an aligned table");
  po::options_description hidden;
  hidden.add_options()("files", po::value<std::vector<std::string>>(), "");
  po::options_description all;
  all.add(opts).add(hidden);
  po::positional_options_description pos;
  pos.add("files", -1);
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << "usage: report FILE.h5 [FILE.h5 ...] [--csv]\n\n"
                 "One row per (run, sampler): the config keys that differ between the runs, final\n"
                 "loss, NFE, each metric, total seconds and status. Exit 1 if any file is unreadable.\n\n"
              << opts;
    return 0;
  }
  if (!vm.count("files")) throw UsageError("no results file given (usage: report FILE.h5 [FILE.h5 ...] [--csv])");
  const bool csv = vm.count("csv") > 0;

  H5::Exception::dontPrint();
  std::vector<Run> runs;
  for (const auto& p : vm["files"].as<std::vector<std::string>>()) runs.push_back(read_run(p));

  // Config keys whose values differ (or are missing somewhere) among the readable runs.
  std::vector<const Run*> good;
  for (const auto& r : runs)
    if (r.readable) good.push_back(&r);
  std::vector<std::string> keys;
  if (good.size() > 1) {
    std::set<std::string> all_keys;
    for (const Run* r : good)
      for (const auto& kv : r->config) all_keys.insert(kv.first);
    for (const auto& k : all_keys) {
      std::optional<std::string> first;
      bool differ = false;
      for (std::size_t i = 0; i < good.size(); ++i) {
        auto it = good[i]->config.find(k);
        const std::string v = it == good[i]->config.end() ? std::string("\x01missing") : it->second;
        if (i == 0) first = v;
        else if (v != *first) differ = true;
      }
      if (differ) keys.push_back(k);
    }
  }
  // Metric columns: every metric of any sampler of any run, in first-seen order.
  std::vector<std::string> metrics;
  for (const Run* r : good)
    for (const auto& s : r->samplers)
      for (const auto& m : s.metric_order)
        if (std::find(metrics.begin(), metrics.end(), m) == metrics.end()) metrics.push_back(m);
  // A file column when run names alone do not tell the files apart.
  std::set<std::string> seen_names;
  bool ambiguous = false;
  for (const auto& r : runs) ambiguous |= !seen_names.insert(r.name).second;

  std::vector<std::string> header;
  if (ambiguous) header.push_back("file");
  header.insert(header.end(), {"run", "sampler"});
  header.insert(header.end(), keys.begin(), keys.end());
  header.push_back("final_loss");
  header.push_back("nfe");
  header.insert(header.end(), metrics.begin(), metrics.end());
  header.push_back("total_s");
  header.push_back("status");

  const std::string dash = "-";
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : runs) {
    std::vector<const SamplerInfo*> samplers;
    for (const auto& s : r.samplers) samplers.push_back(&s);
    if (samplers.empty()) samplers.push_back(nullptr);
    for (const SamplerInfo* s : samplers) {
      std::vector<std::string> row;
      if (ambiguous) row.push_back(r.path);
      row.push_back(r.name);
      row.push_back(s ? s->name : dash);
      for (const auto& k : keys) {
        auto it = r.config.find(k);
        row.push_back(it == r.config.end() ? dash : it->second);
      }
      row.push_back(r.final_loss ? fmt_g(*r.final_loss) : dash);
      row.push_back(s && s->nfe ? std::to_string(*s->nfe) : dash);
      for (const auto& m : metrics) {
        auto it = s ? s->metrics.find(m) : std::map<std::string, double>::const_iterator{};
        row.push_back(s && it != s->metrics.end() ? fmt_g(it->second) : dash);
      }
      row.push_back(r.total_seconds ? fmt_f(*r.total_seconds, 2) : dash);
      row.push_back(r.status);
      rows.push_back(std::move(row));
    }
  }

  if (csv) {
    auto put = [](const std::vector<std::string>& row) {
      for (std::size_t i = 0; i < row.size(); ++i) std::cout << (i ? "," : "") << csv_field(row[i]);
      std::cout << "\n";
    };
    put(header);
    for (const auto& row : rows) put(row);
  } else {
    // Numeric columns (loss, nfe, metrics, seconds) right-aligned; the rest left-aligned; the
    // last column (status) unpadded.
    const std::size_t first_num = header.size() - 3 - metrics.size() - 1;
    std::vector<std::size_t> width(header.size());
    for (std::size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
    for (auto& row : rows)
      for (std::size_t i = 0; i < row.size(); ++i) {
        row[i] = one_line(row[i]);
        width[i] = std::max(width[i], row[i].size());
      }
    auto put = [&](const std::vector<std::string>& row) {
      std::string line;
      for (std::size_t i = 0; i < row.size(); ++i) {
        if (i) line += "  ";
        const std::size_t pad = width[i] - row[i].size();
        const bool numeric = i >= first_num && i + 1 < row.size();
        if (i + 1 == row.size()) line += row[i];
        else if (numeric) line += std::string(pad, ' ') + row[i];
        else line += row[i] + std::string(pad, ' ');
      }
      std::cout << line << "\n";
    };
    put(header);
    for (const auto& row : rows) put(row);
  }
  for (const auto& r : runs)
    if (!r.readable) return 1;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "report: error: " << e.what() << "\n";
    return 2;
  } catch (const po::error& e) {
    std::cerr << "report: error: " << e.what() << " (see report --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "report: error: " << e.what() << "\n";
    return 2;
  }
}

// score_samples: score samples made elsewhere (a PyTorch baseline of the same recipe) with the
// metrics and the reference of one of our results files, so both are measured by one yardstick.
//
//   score_samples RESULTS.h5 SAMPLES.h5 [--dataset images] [--labels labels] [--sampler NAME]
//                 [--plugins FILE_OR_DIR]
//
// RESULTS.h5 is a results file of runexp (docs/results-format.md). Its resolved config (root
// attribute `config`) is composed again through the registries, as runexp composes it, so the
// metrics are the run's own (run it from the folder runexp ran in: paths in the config, such as a
// metric's `classifier:`, are relative to it). They are then computed as the evaluation stage
// computes a sampler's (core/src/run/evaluate_stage.cpp): the first n = min(N, M) samples against
// the first n of the M rows of /data/reference, metrics of class-conditional samples with the
// samples' labels and /data/reference_labels, each from the stream metric:<sampler>:<metric> of
// the run's seed (docs/architecture.md, Randomness), <sampler> the experiment's first sampler
// unless --sampler names another. Samples equal to that sampler's /samples/<sampler>/x therefore
// score exactly its /metrics/<sampler>/<metric>, KID's random subsets included.
//
// SAMPLES.h5 is any HDF5 file (h5py's too) holding `--dataset` (N, ...) in data coordinates (the
// codec undone, as /samples/<s>/x; pixels in [-1, 1] for the image data sets), one sample shaped
// like a reference row, and for metrics of class-conditional samples (classifier_accuracy)
// `--labels` (N) integers, the class each sample was asked for. Metrics of the model itself (nll)
// are skipped: there is no model to measure.
//
// Output: a table (each metric of these samples, the results file's value for the sampler, the
// floor) and one JSON line {"results", "samples", "sampler", "n", "metrics", "figures",
// "results_metrics", "floor", "skipped"}. Exit status 0; 1 with "score_samples: error: ..."
// (a missing file or dataset, a shape mismatch with the reference, a config that does not
// compose); 2 for a bad command line.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include <diffusion/io/h5_memory_file.hpp>
#include <diffusion/io/hdf5_io.hpp>
#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/run/experiment.hpp>
#include <diffusion/tensor/blas_kernels.hpp>
#include <diffusion/tensor/rows.hpp>

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace diffusion;

namespace {

struct UsageError : Error {
  using Error::Error;
};

H5::H5File open_file(const std::string& path) {
  if (!fs::exists(path)) throw Error(path + ": no such file");
  return h5_open_verified(path).file;
}

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s.empty() ? "none" : s;
}

/// `name` in `root` of file `path`, or an Error naming both and what the file holds instead.
void require_dataset(const H5::Group& root, const std::string& path, const std::string& name, const std::string& why) {
  if (h5_exists(root, name) && root.childObjType(name) == H5O_TYPE_DATASET) return;
  throw Error(path + ": no dataset '" + name + "'" + why + " (its top-level datasets: " + joined(h5_dataset_names(root)) +
              ")");
}

/// Class labels from a dataset of integers (or of whole floats, as /samples/<s>/labels).
std::vector<int> read_labels(const H5::Group& root, const std::string& path, const std::string& name, std::size_t n) {
  const Tensor t = read_tensor(root, name);
  const std::string where = path + ":/" + name;
  if (t.dimension() != 1 || t.size() != n)
    throw Error(where + " has shape " + shape_str(t) + "; expected (" + std::to_string(n) + "), one label per sample");
  std::vector<int> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float v = t(i);
    if (!(v >= 0) || v != std::floor(v))
      throw Error(where + ": entry " + std::to_string(i) + " is " + std::to_string(v) + ", not a class (an integer >= 0)");
    out[i] = static_cast<int>(v);
  }
  return out;
}

/// /metrics/<group>/<metric> of the results file, NaN when absent.
double stored_metric(const H5::Group& root, const std::string& group, const std::string& metric) {
  const std::string p = "metrics/" + group + "/" + metric;
  if (!h5_exists(root, p)) return std::nan("");
  return double(*read_tensor(root, p).data());
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  std::ostringstream s;
  s << std::setprecision(9) << v;
  return s.str();
}

std::string cell(double v) {
  if (std::isnan(v)) return "-";
  std::ostringstream s;
  s << std::setprecision(5) << v;
  return s.str();
}

int run(int argc, char** argv) {
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")(
      "dataset", po::value<std::string>()->default_value("images"), "the samples' dataset in SAMPLES.h5, (N, ...)")(
      "labels", po::value<std::string>()->default_value("labels"),
      "the dataset of the class each sample was asked for (N), read when a metric needs it")(
      "sampler", po::value<std::string>(),
      "the experiment's sampler whose metric streams (and stored figures) to use (default: its first)")(
      "plugins", po::value<std::vector<std::string>>()->composing(),
      "also load this plugin file, or the plugins in this folder (repeatable)");
  po::options_description hidden;
  hidden.add_options()("files", po::value<std::vector<std::string>>(), "");
  po::options_description all;
  all.add(opts).add(hidden);
  po::positional_options_description pos;
  pos.add("files", -1);
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
  po::notify(vm);
  const auto files = vm.count("files") ? vm["files"].as<std::vector<std::string>>() : std::vector<std::string>{};
  if (vm.count("help") || files.size() != 2) {
    (vm.count("help") ? std::cout : std::cerr)
        << "usage: score_samples RESULTS.h5 SAMPLES.h5 [options]\n"
           "Scores SAMPLES.h5's samples with RESULTS.h5's metrics against its /data/reference.\n\n"
        << opts;
    if (vm.count("help")) return 0;
    throw UsageError("expected two files, RESULTS.h5 and SAMPLES.h5; got " + std::to_string(files.size()));
  }
  const std::string results_path = files[0], samples_path = files[1];
  const std::string dataset = vm["dataset"].as<std::string>(), labels_name = vm["labels"].as<std::string>();

  load_plugin_dir(default_plugin_dir());
  if (vm.count("plugins"))
    for (const auto& p : vm["plugins"].as<std::vector<std::string>>()) load_plugins(p);

  // The results file: its config, reference and stored figures.
  const H5::H5File results = open_file(results_path);
  const H5::Group rroot = results.openGroup("/");
  if (!has_attribute(rroot, "config"))
    throw Error(results_path + ": no root attribute 'config' (not a results file of runexp)");
  if (has_attribute(rroot, "status") && read_string_attribute(rroot, "status") != "complete")
    std::cerr << "score_samples: note: " << results_path << " has status " << read_string_attribute(rroot, "status")
              << "; its reference is used all the same\n";
  require_dataset(rroot, results_path, "data/reference", " (the run drew no reference to compare with)");
  const Tensor reference = read_tensor(rroot, "data/reference");
  const Config config =
      Config::load_string(read_string_attribute(rroot, "config"), results_path + ":config");
  const Experiment ex = [&] {
    try {
      return compose_experiment(config);
    } catch (const ConfigError& e) {
      throw Error(std::string(e.what()) + " (score_samples composes the run's config again, and relative paths in it " +
                  "are read from the current folder: run it where runexp ran)");
    }
  }();

  std::string sampler;
  if (vm.count("sampler")) {
    sampler = vm["sampler"].as<std::string>();
    std::vector<std::string> names;
    for (const SamplerSpec& s : ex.samplers) names.push_back(s.name);
    if (std::find(names.begin(), names.end(), sampler) == names.end())
      throw UsageError("--sampler " + sampler + ": the experiment of " + results_path + " has no such sampler (it has " +
                       joined(names) + ")");
  } else {
    if (ex.samplers.empty())
      throw UsageError(results_path + ": the experiment has no sampler whose metric streams to use; give --sampler NAME");
    sampler = ex.samplers.front().name;
  }

  // The samples, shaped like reference rows.
  const H5::H5File samples_file = open_file(samples_path);
  const H5::Group sroot = samples_file.openGroup("/");
  require_dataset(sroot, samples_path, dataset, " (give the samples' dataset with --dataset)");
  const Shape s_shape = read_shape(sroot, dataset), r_shape = shape_of(reference);
  const Shape row(r_shape.begin() + 1, r_shape.end());
  if (s_shape.size() != r_shape.size() || !std::equal(row.begin(), row.end(), s_shape.begin() + 1) || s_shape[0] == 0)
    throw Error(samples_path + ":/" + dataset + " has shape " + shape_str(s_shape) + ", but " + results_path +
                ":/data/reference has shape " + shape_str(r_shape) + ": expected (N, " +
                shape_str(row).substr(1));
  const Tensor x_all = read_tensor(sroot, dataset);
  const std::size_t nonfinite =
      static_cast<std::size_t>(std::count_if(x_all.begin(), x_all.end(), [](float v) { return !std::isfinite(v); }));
  if (nonfinite)
    throw Error(samples_path + ":/" + dataset + " holds " + std::to_string(nonfinite) + " non-finite values");
  const std::size_t N = s_shape[0], M = r_shape[0], n = std::min(N, M);
  if (N != M)
    std::cerr << "score_samples: note: " << N << " samples and " << M << " reference rows: comparing the first " << n
              << " of each, as runexp does\n";

  bool labelled = false;
  for (const MetricSpec& m : ex.metrics) labelled = labelled || (!m.metric->of_model() && m.metric->needs_labels());
  std::vector<int> labels, reference_labels;
  if (labelled) {
    std::string which;
    for (const MetricSpec& m : ex.metrics)
      if (m.metric->needs_labels()) which += (which.empty() ? "" : ", ") + m.name;
    require_dataset(sroot, samples_path, labels_name,
                    " (" + which + " reads the class each sample was asked for; give it with --labels)");
    labels = read_labels(sroot, samples_path, labels_name, N);
    require_dataset(rroot, results_path, "data/reference_labels", " (" + which + " reads the reference's classes)");
    for (const std::int64_t l : read_int64_vector(rroot, "data/reference_labels")) reference_labels.push_back(int(l));
    if (reference_labels.size() != M)
      throw Error(results_path + ":/data/reference_labels has " + std::to_string(reference_labels.size()) +
                  " labels for " + std::to_string(M) + " reference rows");
    labels.resize(n);
    reference_labels.resize(n);
  }

  // Every metric of samples, as evaluate_sample_metrics computes repeat 0 of a sampler.
  const Tensor x = first_rows(x_all, n), ref = first_rows(reference, n);
  const std::size_t dim = x.size() / n;
  const Rng master(ex.seed);
  struct Row {
    std::string name;
    MetricValue value;
    double stored, floor;
  };
  std::vector<Row> rows;
  std::vector<std::string> skipped;
  for (const MetricSpec& m : ex.metrics) {
    if (m.metric->of_model()) {
      skipped.push_back(m.name);
      continue;
    }
    try {
      m.metric->check_sizes(n, n, dim);
    } catch (const ConfigError&) {
      throw;
    } catch (const Error& e) {
      throw Error(std::string("metric ") + m.name + " on " + std::to_string(n) + " samples: " + e.what());
    }
    Rng rng = metric_stream(master, sampler, m.name);
    const MetricValue v = score_samples(*m.metric, x, labels, ref, reference_labels, rng);
    rows.push_back({m.name, v, stored_metric(rroot, sampler, m.name), stored_metric(rroot, "data", m.name)});
  }

  std::cout << samples_path << ":/" << dataset << ": " << n << " samples against " << n << " reference rows of "
            << results_path << " (metric streams of sampler " << sampler << ", seed " << ex.seed << ")\n";
  std::size_t w = 6;
  for (const Row& r : rows) w = std::max(w, r.name.size());
  std::cout << std::left << std::setw(int(w) + 2) << "metric" << std::setw(14) << "samples" << std::setw(14)
            << ("run " + sampler) << "floor\n";
  for (const Row& r : rows)
    std::cout << std::setw(int(w) + 2) << r.name << std::setw(14) << cell(r.value.value) << std::setw(14)
              << cell(r.stored) << cell(r.floor) << "\n";
  if (!skipped.empty()) std::cout << "skipped (metrics of the model, not of samples): " << joined(skipped) << "\n";

  std::ostringstream j;
  const auto object = [&](auto value_of) {
    std::string s = "{";
    for (const Row& r : rows) s += (s.size() > 1 ? ", " : "") + json_string(r.name) + ": " + value_of(r);
    return s + "}";
  };
  j << "{\"results\": " << json_string(results_path) << ", \"samples\": " << json_string(samples_path + ":/" + dataset)
    << ", \"sampler\": " << json_string(sampler) << ", \"n\": " << n
    << ", \"metrics\": " << object([](const Row& r) { return json_number(r.value.value); })
    << ", \"figures\": " << object([](const Row& r) {
         std::string s = "{";
         for (const auto& [k, v] : r.value.figures) s += (s.size() > 1 ? ", " : "") + json_string(k) + ": " + json_number(v);
         return s + "}";
       })
    << ", \"results_metrics\": " << object([](const Row& r) { return json_number(r.stored); })
    << ", \"floor\": " << object([](const Row& r) { return json_number(r.floor); }) << ", \"skipped\": [";
  for (std::size_t i = 0; i < skipped.size(); ++i) j << (i ? ", " : "") << json_string(skipped[i]);
  j << "]}";
  std::cout << j.str() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  use_blas_kernels_for_this_cpu(argv);
  H5::Exception::dontPrint();
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "score_samples: error: " << e.what() << "\n";
    return 2;
  } catch (const po::error& e) {
    std::cerr << "score_samples: error: " << e.what() << " (see score_samples --help)\n";
    return 2;
  } catch (const H5::Exception& e) {
    std::cerr << "score_samples: error: " << e.getDetailMsg() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "score_samples: error: " << e.what() << "\n";
  }
  return 1;
}

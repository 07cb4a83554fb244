// report end to end: three small runs of the flagship that differ in train.steps and
// sampler.steps (same seed), compared by the report binary run as a subprocess.
//   - the differing keys are columns with each run's values; equal keys are not columns;
//   - final loss, NFE and every metric match the files to the printed precision;
//   - --csv parses back to the same header and values;
//   - a truncated results file is flagged corrupt (its seal says how long it was), a text
//     file unreadable, a file with one flipped bit corrupt, a checkpoint as a checkpoint of
//     which run and step with the command that resumes it; the good runs still print, and the
//     exit status is 1;
//   - a failed run without samples shows '-', a run with two samplers gets two rows.
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <diffusion/io/hdf5_io.hpp>
#include <diffusion/run/checkpoint.hpp>

#include "sealed_file_edit.hpp"
#include "shell_command.hpp"

namespace fs = std::filesystem;
using diffusion::Error;
using diffusion::Tensor;

namespace {

class ReportScratch {
 public:
  ReportScratch() {
    std::string pattern = (fs::temp_directory_path() / "diffusion-report-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw Error("mkdtemp failed for " + pattern);
    path_ = pattern;
  }
  ~ReportScratch() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  ReportScratch(const ReportScratch&) = delete;
  ReportScratch& operator=(const ReportScratch&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

const char* const kSmall =
    "name: ddim_moons\n"
    "seed: 0\n"
    "dataset: {type: moons, noise: 0.05}\n"
    "network: {type: mlp, hidden: [64, 64], activation: silu,\n"
    "          time_embedding: {type: sinusoidal, dim: 16}}\n"
    "sde:     {type: ddpm, timesteps: 200, schedule: linear, beta_start: 1.0e-4, beta_end: 0.02}\n"
    "loss:    {type: eps_mse}\n"
    "train:   {steps: 100, batch_size: 128, optimizer: {type: adam, lr: 1.0e-3}, ema: 0.99}\n"
    "sampler: {type: ddim, steps: 20, eta: 0.0, n: 200}\n"
    "metrics: [w2, sliced_w2, mmd]\n";

using Output = diffusion::testing::CommandOutput;
using diffusion::testing::run_command;

/// Run a shell command, capturing stdout (stderr goes to the test's stderr).
Output run(const std::string& cmd) { return run_command(cmd); }

std::string quote(const std::string& s) { return diffusion::testing::shell_quote(s); }

std::string bin(const std::string& tool) { return diffusion::testing::tool_path(tool); }

void runexp(const std::string& yaml, const std::string& overrides, const std::string& out) {
  const Output o = run(quote(bin("runexp")) + " " + quote(yaml) + " " + overrides + " --out " + quote(out) +
                       " 2>/dev/null");
  REQUIRE(o.status == 0);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

/// A table row: whitespace-separated cells, the last (status) taking the rest of the line.
std::vector<std::string> table_cells(const std::string& line, std::size_t columns) {
  std::vector<std::string> cells;
  std::istringstream in(line);
  for (std::string w; cells.size() + 1 < columns && in >> w;) cells.push_back(w);
  std::string rest;
  std::getline(in >> std::ws, rest);
  cells.push_back(rest);
  return cells;
}

/// One CSV record (RFC 4180 quoting; no embedded newlines in this test).
std::vector<std::string> csv_cells(const std::string& line) {
  std::vector<std::string> cells(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') cells.back() += '"', ++i;
      else if (c == '"') quoted = false;
      else cells.back() += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      cells.emplace_back();
    } else {
      cells.back() += c;
    }
  }
  return cells;
}

/// The table as header + rows of cells.
struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::size_t col(const std::string& name) const {
    for (std::size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return i;
    FAIL("no column " << name);
    return 0;
  }
  bool has(const std::string& name) const {
    return std::find(header.begin(), header.end(), name) != header.end();
  }
  /// The rows whose file column (or run column) is `key`.
  std::vector<std::string> row_of(const std::string& key, const std::string& column = "file") const {
    const std::size_t c = col(column);
    for (const auto& r : rows)
      if (r[c] == key) return r;
    FAIL("no row with " << column << " = " << key);
    return {};
  }
};

Table parse_table(const std::string& text) {
  Table t;
  const auto lines = lines_of(text);
  REQUIRE(!lines.empty());
  std::istringstream in(lines[0]);
  for (std::string w; in >> w;) t.header.push_back(w);
  for (std::size_t i = 1; i < lines.size(); ++i) {
    t.rows.push_back(table_cells(lines[i], t.header.size()));
    REQUIRE(t.rows.back().size() == t.header.size());
  }
  return t;
}

Table parse_csv(const std::string& text) {
  Table t;
  const auto lines = lines_of(text);
  REQUIRE(!lines.empty());
  t.header = csv_cells(lines[0]);
  for (std::size_t i = 1; i < lines.size(); ++i) {
    t.rows.push_back(csv_cells(lines[i]));
    REQUIRE(t.rows.back().size() == t.header.size());
  }
  return t;
}

/// printed is v to 6 significant digits (the report's precision).
bool matches_printed(const std::string& printed, double v) {
  const double p = std::stod(printed);
  const double ulp = v == 0 ? 1e-300 : std::pow(10.0, std::floor(std::log10(std::fabs(v))) - 5);
  return std::fabs(p - v) <= 0.5 * ulp * 1.001;
}

/// The good runs' numbers in `t` are those of the files.
void check_values(const Table& t, const std::vector<std::string>& files) {
  for (const auto& path : files) {
    const auto row = t.row_of(path);
    H5::H5File f(path, H5F_ACC_RDONLY);
    CHECK(row[t.col("run")] == "ddim_moons");
    CHECK(row[t.col("sampler")] == "ddim");
    CHECK(row[t.col("status")] == "complete");
    const Tensor loss = diffusion::read_tensor(diffusion::h5_open_group(f, "train"), "loss");
    CHECK(matches_printed(row[t.col("final_loss")], loss.flat(loss.size() - 1)));
    CHECK(row[t.col("nfe")] ==
          std::to_string(diffusion::read_int_attribute(diffusion::h5_open_group(f, "samples/ddim"), "nfe")));
    const H5::Group m = diffusion::h5_open_group(f, "metrics/ddim");
    for (const char* metric : {"w2", "sliced_w2", "mmd"}) {
      INFO(path << " " << metric << " printed " << row[t.col(metric)]);
      CHECK(matches_printed(row[t.col(metric)], diffusion::read_tensor(m, metric).flat(0)));
    }
    CHECK(std::stod(row[t.col("total_s")]) == Approx(diffusion::read_double_attribute(f, "total_seconds")).margin(0.006));
  }
}

}  // namespace

TEST_CASE("report compares runs: differing keys, metrics, csv, unreadable files", "[e2e][report]") {
  ReportScratch dir;
  const std::string yaml = dir / "small.yaml";
  std::ofstream(yaml) << kSmall;
  const std::string a = dir / "a.h5", b = dir / "b.h5", c = dir / "c.h5";
  runexp(yaml, "train.steps=60 sampler.steps=10", a);
  runexp(yaml, "train.steps=120 sampler.steps=20", b);
  runexp(yaml, "train.steps=180 sampler.steps=20", c);
  const std::map<std::string, std::pair<std::string, std::string>> expected = {
      {a, {"60", "10"}}, {b, {"120", "20"}}, {c, {"180", "20"}}};
  const std::string files = quote(a) + " " + quote(b) + " " + quote(c);

  const Output table_out = run(quote(bin("report")) + " " + files);
  INFO(table_out.out);
  REQUIRE(table_out.status == 0);
  const Table t = parse_table(table_out.out);
  REQUIRE(t.rows.size() == 6);  // each run's sampler, then its metric floor (sampler `data`)

  SECTION("differing keys are columns, equal ones are not; values match the files") {
    CHECK(t.has("file"));  // the three runs share the name ddim_moons
    CHECK(t.has("train.steps"));
    CHECK(t.has("sampler.steps"));
    for (const char* same : {"dataset.noise", "seed", "name", "network.hidden", "train.batch_size", "metrics"})
      CHECK_FALSE(t.has(same));
    for (const auto& [path, v] : expected) {
      const auto row = t.row_of(path);
      CHECK(row[t.col("train.steps")] == v.first);
      CHECK(row[t.col("sampler.steps")] == v.second);
    }
    check_values(t, {a, b, c});
    // NFE follows sampler.steps.
    CHECK(t.row_of(a)[t.col("nfe")] == "10");
  }

  SECTION("--csv parses back to the same header and values") {
    const Output csv_out = run(quote(bin("report")) + " --csv " + files);
    REQUIRE(csv_out.status == 0);
    const Table csv = parse_csv(csv_out.out);
    CHECK(csv.header == t.header);
    CHECK(csv.rows == t.rows);
  }

  SECTION("a single run shows no config columns") {
    const Output one = run(quote(bin("report")) + " " + quote(a));
    REQUIRE(one.status == 0);
    const Table t1 = parse_table(one.out);
    REQUIRE(t1.rows.size() == 2);
    CHECK(t1.rows[1][t1.col("sampler")] == "data");
    CHECK(t1.rows[1][t1.col("nfe")] == "-");
    CHECK(t1.header == std::vector<std::string>{"run", "sampler", "final_loss", "nfe", "w2", "sliced_w2", "mmd",
                                                "total_s", "status"});
  }

  SECTION("truncated and non-HDF5 files are flagged; the good runs still print; exit 1") {
    const std::string trunc = dir / "trunc.h5", text = dir / "notes.h5";
    fs::copy_file(a, trunc);
    fs::resize_file(trunc, fs::file_size(a) / 2);
    std::ofstream(text) << "name: not a results file, just text\n";
    for (const bool csv : {false, true}) {
      const Output o = run(quote(bin("report")) + (csv ? " --csv " : " ") + files + " " + quote(trunc) + " " +
                           quote(text) + " 2>/dev/null");
      INFO(o.out);
      CHECK(o.status == 1);
      const Table t2 = csv ? parse_csv(o.out) : parse_table(o.out);
      REQUIRE(t2.rows.size() == 8);  // three runs with their floors, and the two unreadable files
      check_values(t2, {a, b, c});
      for (const auto& [path, v] : expected) CHECK(t2.row_of(path)[t2.col("train.steps")] == v.first);
      const auto rt = t2.row_of(trunc);
      CHECK(rt[t2.col("status")].rfind("corrupt: ", 0) == 0);
      CHECK(rt[t2.col("status")].find("(truncated)") != std::string::npos);
      CHECK(rt[t2.col("run")] == "trunc");
      CHECK(rt[t2.col("w2")] == "-");
      const auto rx = t2.row_of(text);
      CHECK(rx[t2.col("status")] == "unreadable: not an HDF5 file");
      CHECK(rx[t2.col("final_loss")] == "-");
    }
  }

  SECTION("a checkpoint and a file with a flipped bit are flagged as such; exit 1") {
    const auto ckpts = diffusion::list_checkpoints(diffusion::checkpoint_dir_for(a));
    REQUIRE(!ckpts.empty());
    const std::string flipped = dir / "flipped.h5";
    fs::copy_file(a, flipped);
    diffusion::testing::flip_bit(flipped, 8 * (fs::file_size(a) / 2));
    const Output o = run(quote(bin("report")) + " " + quote(a) + " " + quote(ckpts.back().second) + " " +
                         quote(flipped) + " 2>/dev/null");
    INFO(o.out);
    CHECK(o.status == 1);
    const Table t4 = parse_table(o.out);
    const auto rc = t4.row_of(ckpts.back().second);
    CHECK(rc[t4.col("run")] == "ddim_moons");
    CHECK(rc[t4.col("status")] == "not a results file: checkpoint of run ddim_moons at step " +
                                      std::to_string(ckpts.back().first) + "; to continue that run: runexp --resume " + a);
    const auto rf = t4.row_of(flipped);
    CHECK(rf[t4.col("status")].rfind("corrupt: its CRC-32 is ", 0) == 0);
    CHECK(rf[t4.col("w2")] == "-");
    // The good run is still read.
    check_values(t4, {a});
  }

  SECTION("a failed run without samples shows '-'") {
    const std::string failed = dir / "failed.h5";
    {
      H5::H5File src(a, H5F_ACC_RDONLY);
      H5::H5File f(failed, H5F_ACC_TRUNC);
      diffusion::write_attribute(f, "config", diffusion::read_string_attribute(src, "config"));
      diffusion::write_attribute(f, "name", "diverged_run");
      diffusion::write_attribute(f, "status", "failed");
      diffusion::write_attribute(f, "error", "training diverged, loss is nan");
      diffusion::write_tensor(diffusion::h5_require_group(f, "train"), "loss", Tensor{1.5f, 0.25f});
    }
    const Output o = run(quote(bin("report")) + " " + quote(a) + " " + quote(failed));
    INFO(o.out);
    CHECK(o.status == 0);
    const Table t3 = parse_table(o.out);
    REQUIRE(t3.rows.size() == 3);  // a.h5 and its floor, and the failed run
    CHECK_FALSE(t3.has("file"));  // names differ
    CHECK_FALSE(t3.has("train.steps"));  // same config
    const auto row = t3.row_of("diverged_run", "run");
    CHECK(row[t3.col("sampler")] == "-");
    CHECK(row[t3.col("nfe")] == "-");
    CHECK(row[t3.col("w2")] == "-");
    CHECK(row[t3.col("total_s")] == "-");
    CHECK(row[t3.col("final_loss")] == "0.25");
    CHECK(row[t3.col("status")] == "failed: training diverged, loss is nan");
    // The quoted CSV field keeps the comma of the error.
    const Table c3 = parse_csv(run(quote(bin("report")) + " --csv " + quote(a) + " " + quote(failed)).out);
    CHECK(c3.row_of("diverged_run", "run")[c3.col("status")] == "failed: training diverged, loss is nan");
  }
}

TEST_CASE("report gives a run with two samplers one row per sampler, in config order", "[e2e][report]") {
  ReportScratch dir;
  const std::string yaml = dir / "two.yaml";
  std::string text = kSmall;
  const std::string one = "sampler: {type: ddim, steps: 20, eta: 0.0, n: 200}\n";
  text.replace(text.find(one), one.size(),
               "samplers: [{type: ddim, name: fast, steps: 5, n: 200}, {type: ddim, name: slow, steps: 25, n: 200}]\n");
  std::ofstream(yaml) << text;
  const std::string out = dir / "two.h5";
  runexp(yaml, "train.steps=60", out);
  const Output o = run(quote(bin("report")) + " " + quote(out));
  INFO(o.out);
  REQUIRE(o.status == 0);
  const Table t = parse_table(o.out);
  REQUIRE(t.rows.size() == 3);
  CHECK(t.rows[2][t.col("sampler")] == "data");  // the metric floor comes last
  CHECK(t.rows[0][t.col("sampler")] == "fast");
  CHECK(t.rows[0][t.col("nfe")] == "5");
  CHECK(t.rows[1][t.col("sampler")] == "slow");
  CHECK(t.rows[1][t.col("nfe")] == "25");
  CHECK(t.rows[0][t.col("final_loss")] == t.rows[1][t.col("final_loss")]);
  H5::H5File f(out, H5F_ACC_RDONLY);
  for (const auto& row : t.rows)
    CHECK(matches_printed(row[t.col("w2")],
                          diffusion::read_tensor(diffusion::h5_open_group(f, "metrics/" + row[t.col("sampler")]), "w2").flat(0)));
}

// tools/plugin-template as a user builds it: install the toolkit into a temporary prefix,
// configure and build the template against that install tree (never the source tree), run
// its experiment with the installed runexp from a clean environment; then the loader's
// refusals (not a library, not a plugin, a duplicate component name), each naming the file.
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <diffusion/io/hdf5_io.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

namespace fs = std::filesystem;
using diffusion::Error;
using diffusion::Registries;

namespace {

/// A fresh folder under the system temp dir, removed with everything in it.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    std::string pattern = (fs::temp_directory_path() / ("diffusion-" + tag + "-XXXXXX")).string();
    if (!::mkdtemp(pattern.data())) throw Error("mkdtemp failed for " + pattern);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

/// Single-quoted for /bin/sh.
std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct Command {
  int status = -1;     ///< exit code (-1 if it did not exit normally)
  std::string output;  ///< stdout and stderr together
};

/// Run a shell command without LD_LIBRARY_PATH (installed binaries must find their libraries
/// on their own), capturing its output.
Command run(const std::string& command) {
  Command r;
  FILE* pipe = ::popen(("env -u LD_LIBRARY_PATH " + command + " 2>&1").c_str(), "r");
  if (!pipe) throw Error("popen failed: " + command);
  char buffer[4096];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) r.output.append(buffer, n);
  const int raw = ::pclose(pipe);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return r;
}

/// Run and require exit code 0, showing the command and its output otherwise.
std::string must_run(const std::string& command) {
  const Command r = run(command);
  INFO("$ " << command << "\n" << r.output);
  REQUIRE(r.status == 0);
  return r.output;
}

/// The command lines of the README's "Writing a plugin" block (between its plugin-steps
/// markers), comments and blank lines left out.
std::vector<std::string> readme_plugin_steps() {
  std::ifstream in(std::string(DIFFUSION_SOURCE_DIR) + "/README.md");
  REQUIRE(in);
  std::vector<std::string> lines;
  bool inside = false, in_code = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("<!-- plugin-steps", 0) == 0) inside = true;
    else if (line.rfind("<!-- end plugin-steps", 0) == 0) break;
    else if (inside && line.rfind("```", 0) == 0) in_code = !in_code;
    else if (in_code && !line.empty() && line[0] != '#') lines.push_back(line);
  }
  return lines;
}

/// A README line as it runs here: the toolkit's `build` is the build under test, `tools/...`
/// is in the source tree, and every other relative path (my_plugin/...) lands in `work`.
std::string localised(const std::string& line, const std::string& work) {
  std::istringstream words(line);
  std::string out, word, previous;
  while (words >> word) {
    if (word == "build") word = DIFFUSION_BINARY_DIR;
    else if (previous == "-S" && word == ".") word = DIFFUSION_SOURCE_DIR;
    else if (word.rfind("tools/", 0) == 0) word = std::string(DIFFUSION_SOURCE_DIR) + "/" + word;
    else if (word.rfind("my_plugin", 0) == 0) word = work + "/" + word;
    out += (out.empty() ? "" : " ") + word;
    previous = word;
  }
  return out;
}

/// The toolkit installed into a temporary prefix and the template built against it, by the
/// README's own lines. Built once per process (the refusal case reuses the plugin), removed
/// at exit.
struct InstalledTemplate {
  TempDir root{"plugin-template"};
  std::string home = root / "home";  // $HOME of the README's lines
  std::string prefix = root / "home/.local/diffusion";
  std::string build = root / "my_plugin/build";
  std::string plugin = root / "my_plugin/build/libmy_plugin.so";
  std::string runexp = root / "home/.local/diffusion/bin/runexp";
  std::string source = root / "my_plugin";
};

const InstalledTemplate& installed_template() {
  static std::unique_ptr<InstalledTemplate> made;
  if (made) return *made;
  auto t = std::make_unique<InstalledTemplate>();
  fs::create_directories(t->home);
  const std::vector<std::string> steps = readme_plugin_steps();
  // The toolkit's own configure and build are those of the build under test (running them
  // again here could rebuild it with other flags); the test checks they are written right.
  REQUIRE(steps.size() == 8);
  CHECK(steps[0] == "cmake -S . -B build -DCMAKE_BUILD_TYPE=Release");
  CHECK(steps[1] == "cmake --build build -j2");
  for (std::size_t i = 2; i < steps.size(); ++i)
    must_run("sh -c " + quote("cd " + quote(t->root.path().string()) + " && export HOME=" + quote(t->home) +
                              " && " + localised(steps[i], t->root.path().string())));
  REQUIRE(fs::is_regular_file(t->plugin));
  REQUIRE(fs::is_regular_file(t->source + "/run.h5"));
  made = std::move(t);
  return *made;
}

/// Every registered name of every kind with its origin: "dataset moons" -> "libdiffusion_toy_data.so".
std::map<std::string, std::string> snapshot(const Registries& r) {
  std::map<std::string, std::string> out;
  auto add = [&out](const auto& reg) {
    for (const auto& name : reg.names()) out[reg.kind() + " " + name] = reg.origin(name);
  };
  add(r.datasets), add(r.networks), add(r.losses), add(r.paths), add(r.samplers), add(r.metrics);
  add(r.time_grids), add(r.preconditionings), add(r.codecs);
  return out;
}

/// The message of the Error load_plugin throws for `file` (fails the test if it loads).
std::string refusal(const std::string& file, Registries& regs) {
  try {
    diffusion::load_plugin(file, regs);
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("load_plugin accepted " << file);
  return {};
}

/// Whether `listing` (runexp --list) has the line "  <name>   (<origin>)".
bool lists(const std::string& listing, const std::string& name, const std::string& origin) {
  std::istringstream in(listing);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("  " + name + " ", 0) != 0) continue;
    const std::string tail = "(" + origin + ")";
    if (line.size() >= tail.size() && line.compare(line.size() - tail.size(), tail.size(), tail) == 0)
      return true;
  }
  return false;
}

/// Where `ldd` says `lib` resolves to ("libdiffusion_core.so.0 => PATH (0x...)"), canonical;
/// "" if ldd does not list it or cannot find it.
std::string ldd_resolved(const std::string& ldd_output, const std::string& lib) {
  std::istringstream in(ldd_output);
  for (std::string line; std::getline(in, line);) {
    const std::size_t arrow = line.find(" => ");
    if (line.find(lib) == std::string::npos || arrow == std::string::npos) continue;
    const std::size_t begin = arrow + 4, end = line.find(" (", begin);
    const std::string path = line.substr(begin, end == std::string::npos ? end : end - begin);
    return fs::exists(path) ? fs::canonical(path).string() : std::string();
  }
  return {};
}

}  // namespace

TEST_CASE("the plugin template builds against the install tree and runs its experiment",
          "[e2e][plugin]") {
  const InstalledTemplate& t = installed_template();
  // <prefix>/<libdir>: "lib" here, "lib64" or "lib/<multiarch>" elsewhere.
  fs::path libdir;
  for (const auto& entry : fs::recursive_directory_iterator(t.prefix))
    if (entry.path().filename() == "libdiffusion_core.so") libdir = entry.path().parent_path();
  REQUIRE_FALSE(libdir.empty());
  const std::string core = fs::canonical(libdir / "libdiffusion_core.so").string();
  const fs::path plugin_dir = libdir / "diffusion/plugins";

  SECTION("installed binaries and plugins find libdiffusion_core in the prefix on their own") {
    std::vector<std::string> files = {t.runexp, t.plugin};
    for (const auto& entry : fs::directory_iterator(plugin_dir)) files.push_back(entry.path().string());
    REQUIRE(files.size() > 2);
    for (const auto& file : files) {
      const std::string out = must_run("ldd " + quote(file));
      CAPTURE(file, out);
      CHECK(out.find("not found") == std::string::npos);
      CHECK(ldd_resolved(out, "libdiffusion_core.so") == core);
    }
  }

  SECTION("--list shows the installed plugins and the new data set with its plugin file") {
    const std::string out = must_run(quote(t.runexp) + " --list --plugins " + quote(t.build));
    CAPTURE(out);
    CHECK(lists(out, "isotropic_gaussian", "libmy_plugin.so"));
    CHECK(lists(out, "moons", "libdiffusion_toy_data.so"));  // the installed plugins are loaded too
  }

  SECTION("runexp trains and samples on the plugin's data set; the results file is complete") {
    const std::string out_file = t.root / "run.h5";
    must_run(quote(t.runexp) + " " + quote(t.source + "/experiment.yaml") + " --plugins " +
             quote(t.build) + " --out " + quote(out_file) + " train.steps=50 sampler.n=200");
    REQUIRE(fs::is_regular_file(out_file));
    H5::H5File file(out_file, H5F_ACC_RDONLY);
    CHECK(diffusion::read_string_attribute(file, "status") == "complete");
    // Samples have the data set's dimension (dim: 3 in experiment.yaml), not the toy data's 2.
    const H5::Group samples = diffusion::h5_open_group(file, "samples");
    REQUIRE(samples.getNumObjs() == 1);
    const H5::Group sampler = diffusion::h5_open_group(samples, samples.getObjnameByIdx(0));
    CHECK(diffusion::read_shape(sampler, "x") == diffusion::Shape{200, 3});
  }
}

TEST_CASE("the plugin loader refuses a file that is not a shared library", "[e2e][plugin][loader]") {
  TempDir dir("not-a-library");
  const std::string file = dir / "libgarbage.so";
  std::ofstream(file) << "this is not an ELF file\n";
  Registries regs;
  const auto before = snapshot(regs);
  const std::string msg = refusal(file, regs);
  CAPTURE(msg);
  CHECK_THAT(msg, Catch::Matchers::Contains(fs::weakly_canonical(file).string()));
  CHECK_THAT(msg, Catch::Matchers::Contains("file too short to be a shared library (24 bytes)"));
  CHECK(snapshot(regs) == before);
}

TEST_CASE("the plugin loader refuses a shared library without the plugin entry points",
          "[e2e][plugin][loader]") {
  // Any real library will do; zlib is there wherever HDF5 is.
  std::string zlib;
  for (const char* d : {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
                        "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib"})
    if (fs::exists(fs::path(d) / "libz.so.1")) {
      zlib = (fs::path(d) / "libz.so.1").string();
      break;
    }
  REQUIRE_FALSE(zlib.empty());
  TempDir dir("not-a-plugin");
  const std::string file = dir / "libnot_a_plugin.so";
  fs::copy_file(zlib, file);
  Registries regs;
  const auto before = snapshot(regs);
  const std::string msg = refusal(file, regs);
  CAPTURE(msg);
  CHECK_THAT(msg, Catch::Matchers::Contains(fs::weakly_canonical(file).string()));
  CHECK_THAT(msg, Catch::Matchers::Contains("not a diffusion plugin"));
  CHECK_THAT(msg, Catch::Matchers::Contains("diffusion_plugin_abi_version"));
  CHECK(snapshot(regs) == before);
}

TEST_CASE("the plugin loader refuses a second plugin registering a name already taken",
          "[e2e][plugin][loader]") {
  const InstalledTemplate& t = installed_template();
  // Two copies under other names, so this process's list of loaded files (shared by every
  // Registries) cannot already hold them.
  TempDir dir("duplicate");
  const std::string first = dir / "libmy_plugin.so";
  const std::string second = dir / "libmy_plugin_copy.so";
  fs::copy_file(t.plugin, first);
  fs::copy_file(t.plugin, second);

  Registries regs;
  diffusion::load_plugin(first, regs);
  REQUIRE(regs.datasets.contains("isotropic_gaussian"));
  const auto before = snapshot(regs);

  const std::string msg = refusal(second, regs);
  CAPTURE(msg);
  CHECK_THAT(msg, Catch::Matchers::Contains(fs::weakly_canonical(second).string()));
  CHECK_THAT(msg, Catch::Matchers::Contains("already registered"));
  CHECK_THAT(msg, Catch::Matchers::Contains("isotropic_gaussian"));
  CHECK(snapshot(regs) == before);
  CHECK(regs.datasets.origin("isotropic_gaussian") == "libmy_plugin.so");
  const auto& loaded = diffusion::loaded_plugins();
  CHECK(std::find(loaded.begin(), loaded.end(), fs::weakly_canonical(second).string()) == loaded.end());
}

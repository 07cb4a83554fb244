// Runs killed at the edges (issue 17, "nothing lost at the edges", case 9 and acceptance 2):
//   - 50 runs are killed (SIGKILL, SIGTERM, SIGINT) at seeded random moments in each phase of a
//     run: starting, training, writing a checkpoint, sampling (and evaluating), writing the
//     results. Each is then resumed from its newest checkpoint, or, when it had none (killed
//     before its first), run again: every one ends bit-identical to a run that was never
//     stopped, and after that next run the folder holds no temporary or lock file;
//   - a run removes the temporary files that killed runs left in its folder (its own output's,
//     and other outputs' whose lock is free), and keeps those of a run that is still writing;
//   - a run starting while another one briefly holds its output's lock (to clear a dead run's
//     files) waits for it instead of being refused.
//
// The moments are driven by what the run does, seen through inotify on its folders (a temporary
// results file appears when the run starts, each checkpoint is created then renamed into place,
// the results file is written last), plus a seeded random delay: every phase is hit whatever the
// machine's speed. DIFFUSION_KILL_RESUME_TRIALS overrides the count (the sanitizer pass may run
// fewer; the normal pass runs all 50).
#include <signal.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <diffusion/io/hdf5_io.hpp>
#include <diffusion/run/checkpoint.hpp>
#include <diffusion/run/output_lock.hpp>

#include "runexp_child.hpp"
#include "scratch_dir.hpp"

namespace fs = std::filesystem;
using diffusion::testing::Child;
using diffusion::testing::run_runexp;
using diffusion::testing::ScratchDir;
using diffusion::testing::spawn_runexp;
using diffusion::testing::wait_runexp;

namespace {

// A run of about a third of a second, each phase long enough to be hit at random: 60 training
// steps with a checkpoint every 4 (15 checkpoints), 500 DDIM steps on 1000 points, the energy
// distance. EMA with warm-up, a cosine schedule, eta > 0 (fresh noise each sampler step) and a
// log window (7) that does not divide the checkpoint interval: the EMA count, the schedule
// position, the loss-window accumulators and every random stream must all be restored for a
// resumed run to match.
const char* const kConfig =
    "name: kill_resume\n"
    "seed: 5\n"
    "dataset: {type: moons, noise: 0.05}\n"
    "network: {type: mlp, hidden: [32], time_embedding: {type: sinusoidal, dim: 8}}\n"
    "sde:     {type: ddpm, timesteps: 1000}\n"
    "loss:    {type: eps_mse}\n"
    "train:   {steps: 60, batch_size: 32, optimizer: {type: adam, lr: 1.0e-3}, lr_schedule: {type: cosine},\n"
    "          ema: 0.99, log_every: 7, checkpoint_every: 4}\n"
    "sampler: {type: ddim, steps: 500, eta: 0.5, n: 1000, trajectory: 3}\n"
    "metrics: [energy]\n";
constexpr int kSteps = 60, kCheckpointEvery = 4;

// ---- comparing two results files ----

/// Every dataset under `group` (recursively): the same names, shapes, types and bytes; and the
/// numeric attributes of each dataset (a metric's `values`, `std`, `count`).
void require_same_tree(const H5::Group& a, const H5::Group& b, const std::string& where) {
  REQUIRE(a.getNumObjs() == b.getNumObjs());
  for (hsize_t i = 0; i < a.getNumObjs(); ++i) {
    const std::string name = a.getObjnameByIdx(i);
    const std::string path = where + "/" + name;
    CAPTURE(path);
    REQUIRE(diffusion::h5_exists(b, name));
    const H5G_obj_t type = a.getObjTypeByIdx(i);
    if (type == H5G_GROUP) {
      require_same_tree(a.openGroup(name), b.openGroup(name), path);
      continue;
    }
    REQUIRE(type == H5G_DATASET);
    const H5::DataSet da = a.openDataSet(name), db = b.openDataSet(name);
    const H5::DataType ta = da.getDataType(), tb = db.getDataType();
    REQUIRE((ta.getClass() == H5T_FLOAT || ta.getClass() == H5T_INTEGER));
    REQUIRE(ta == tb);
    const H5::DataSpace sa = da.getSpace(), sb = db.getSpace();
    REQUIRE(sa.getSimpleExtentNdims() == sb.getSimpleExtentNdims());
    std::vector<hsize_t> ea(std::size_t(sa.getSimpleExtentNdims())), eb(ea.size());
    sa.getSimpleExtentDims(ea.data()), sb.getSimpleExtentDims(eb.data());
    REQUIRE(ea == eb);
    const std::size_t bytes = std::size_t(sa.getSimpleExtentNpoints()) * ta.getSize();
    std::vector<char> xa(std::max<std::size_t>(bytes, 1)), xb(xa.size());
    if (bytes) da.read(xa.data(), ta), db.read(xb.data(), tb);
    REQUIRE(std::memcmp(xa.data(), xb.data(), bytes) == 0);
    for (int k = 0; k < da.getNumAttrs(); ++k) {
      const H5::Attribute aa = da.openAttribute(unsigned(k));
      const H5::DataType at = aa.getDataType();
      if (at.getClass() != H5T_FLOAT && at.getClass() != H5T_INTEGER) continue;
      CAPTURE(aa.getName());
      REQUIRE(db.attrExists(aa.getName()));
      const H5::Attribute ab = db.openAttribute(aa.getName());
      const std::size_t n = std::size_t(aa.getSpace().getSimpleExtentNpoints()) * at.getSize();
      REQUIRE(std::size_t(ab.getSpace().getSimpleExtentNpoints()) * ab.getDataType().getSize() == n);
      std::vector<char> va(std::max<std::size_t>(n, 1)), vb(va.size());
      aa.read(at, va.data()), ab.read(at, vb.data());
      REQUIRE(std::memcmp(va.data(), vb.data(), n) == 0);
    }
  }
}

/// The two runs' samples, metrics, weights (model and EMA) and loss logs, bit for bit.
void require_same_run(const std::string& ref_path, const std::string& path) {
  H5::H5File ref(ref_path, H5F_ACC_RDONLY), run(path, H5F_ACC_RDONLY);
  const H5::Group a = ref.openGroup("/"), b = run.openGroup("/");
  REQUIRE(diffusion::read_string_attribute(b, "status") == "complete");
  for (const std::string group : {"samples", "metrics", "model", "ema", "train"}) {
    CAPTURE(group);
    REQUIRE(diffusion::h5_exists(a, group));
    REQUIRE(diffusion::h5_exists(b, group));
    require_same_tree(a.openGroup(group), b.openGroup(group), "/" + group);
  }
}

// ---- what is left in a folder ----

/// Whatever a run writes only while it runs: temporary files (".<name>.<pid>.tmp", and any
/// other name with ".tmp" in it), lock files, and a checkpoint folder's ".replaced" (the
/// checkpoints of an earlier run, set aside by a fresh run's first checkpoint and deleted once it
/// is written, or by a resume from it; checkpoint.hpp).
std::vector<std::string> leftovers(const fs::path& folder) {
  std::vector<std::string> found;
  for (const auto& e : fs::recursive_directory_iterator(folder)) {
    const std::string name = e.path().filename().string();
    if (name.find(".tmp") != std::string::npos || (name.size() > 5 && name.substr(name.size() - 5) == ".lock") ||
        name == ".replaced")
      found.push_back(e.path().string());
  }
  return found;
}

bool exists_name(const fs::path& folder, const std::function<bool(const std::string&)>& match) {
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec))
    if (match(it->path().filename().string())) return true;
  return false;
}

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// ---- watching a run ----

/// inotify on a few folders: files created, written and renamed into them, as it happens.
class FolderEvents {
 public:
  explicit FolderEvents(const std::vector<std::string>& folders) : fd_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
    if (fd_ < 0) throw diffusion::Error("inotify_init1 failed");
    for (const auto& f : folders) {
      const int wd = ::inotify_add_watch(fd_, f.c_str(), IN_CREATE | IN_MODIFY | IN_MOVED_TO);
      if (wd < 0) throw diffusion::Error("inotify_add_watch failed on " + f);
      folder_of_[wd] = f;
    }
  }
  ~FolderEvents() { ::close(fd_); }
  FolderEvents(const FolderEvents&) = delete;
  FolderEvents& operator=(const FolderEvents&) = delete;

  /// Wait for an event of `mask` in `folder` on a name that `match` accepts. False if the
  /// process `pid` ended first (it is not reaped) or 120 s passed.
  bool wait_for(const std::string& folder, std::uint32_t mask, const std::function<bool(const std::string&)>& match,
                pid_t pid) {
    const auto t0 = std::chrono::steady_clock::now();
    alignas(inotify_event) char buf[16384];
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120)) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 5) > 0) {
        const ssize_t n = ::read(fd_, buf, sizeof buf);
        for (ssize_t at = 0; n > 0 && at < n;) {
          const auto* ev = reinterpret_cast<const inotify_event*>(buf + at);
          at += ssize_t(sizeof(inotify_event) + ev->len);
          if ((ev->mask & mask) && ev->len > 0 && folder_of_[ev->wd] == folder && match(ev->name)) return true;
        }
        continue;
      }
      siginfo_t info{};
      if (::waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) return false;
    }
    return false;
  }

 private:
  int fd_;
  std::map<int, std::string> folder_of_;
};

enum Phase { kStarting, kTraining, kCheckpointing, kSampling, kWriting, kPhases };
const char* const kPhaseNames[kPhases] = {"starting", "training", "checkpointing", "sampling", "writing"};

struct Trial {
  int index = 0;
  Phase phase = kStarting;
  int signal = SIGKILL;
  int checkpoint_step = 0;  ///< checkpointing: the checkpoint whose writing is hit
  double delay = 0;         ///< seconds after the phase's event
};

const char* signal_name(int sig) { return sig == SIGKILL ? "SIGKILL" : sig == SIGTERM ? "SIGTERM" : "SIGINT"; }

/// Each (phase, signal) pair in turn, so 15 or more trials cover them all; the moment within the
/// phase drawn from a fixed seed. `train_s` and `after_train_s`: the reference run's training
/// time and its time from the end of training to its end.
std::vector<Trial> draw_trials(int n, double train_s, double after_train_s) {
  std::mt19937_64 rng(20241202);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const std::array<int, 3> signals{SIGKILL, SIGTERM, SIGINT};
  std::vector<Trial> trials;
  for (int i = 0; i < n; ++i) {
    Trial t;
    t.index = i;
    t.phase = Phase(i % kPhases);
    t.signal = signals[std::size_t(i / kPhases) % signals.size()];
    switch (t.phase) {
      case kStarting: t.delay = 0.08 * u(rng); break;  // from the spawn: loading plugins, composing
      case kTraining: t.delay = train_s * u(rng); break;  // from the run's start (its temporary file)
      case kCheckpointing:
        t.checkpoint_step = kCheckpointEvery * (1 + int(u(rng) * (kSteps / kCheckpointEvery)) % (kSteps / kCheckpointEvery));
        t.delay = 0.0005 * u(rng);  // from the checkpoint's temporary file: within its write
        break;
      case kSampling: t.delay = 0.8 * after_train_s * u(rng); break;  // from the last checkpoint
      case kWriting: t.delay = 0.0005 * u(rng); break;  // from the first write of the results
      default: break;
    }
    trials.push_back(t);
  }
  return trials;
}

int trial_count() {
  const char* env = std::getenv("DIFFUSION_KILL_RESUME_TRIALS");
  return env && *env ? std::max(1, std::atoi(env)) : 50;
}

/// "time: train 0.09 s, sample 0.02 s, metrics 0.07 s, total 0.20 s" -> the named figure.
double seconds_in_summary(const std::string& out, const std::string& what) {
  const auto at = out.find(what + " ");
  return at == std::string::npos ? 0.0 : std::atof(out.c_str() + at + what.size() + 1);
}

void sleep_seconds(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

}  // namespace

TEST_CASE("kill and resume: 50 runs killed at random moments in every phase resume bit-identical and clean",
          "[e2e][resume][kill]") {
  ScratchDir results("kill-resume"), logs("kill-resume-logs");
  const std::string yaml = logs / "x.yaml";
  std::ofstream(yaml) << kConfig;
  const std::string ref = logs / "ref.h5";
  const Child ref_run = run_runexp({yaml, "--out", ref}, logs / "ref");
  CAPTURE(ref_run.err);
  REQUIRE(ref_run.status == 0);
  const double train_s = seconds_in_summary(ref_run.out, "train");
  const double after_train_s = seconds_in_summary(ref_run.out, "sample") + seconds_in_summary(ref_run.out, "metrics");
  REQUIRE(train_s > 0);

  const std::vector<Trial> trials = draw_trials(trial_count(), train_s, after_train_s);
  // What the trials saw, for the summary and the checks at the end.
  int resumed = 0, rerun = 0, killed = 0, stopped = 0, completed = 0, left_temp = 0, left_checkpoint_temp = 0;
  for (const Trial& t : trials) {
    char tag[16];
    std::snprintf(tag, sizeof tag, "t%02d", t.index);
    const std::string out = results / (std::string(tag) + ".h5");
    const std::string ckpt_dir = diffusion::checkpoint_dir_for(out);
    const std::string log = logs / tag;
    CAPTURE(t.index, kPhaseNames[t.phase], signal_name(t.signal), t.checkpoint_step, t.delay);
    fs::create_directory(ckpt_dir);  // so that it can be watched from the start
    FolderEvents events({results.path().string(), ckpt_dir});

    const pid_t pid = spawn_runexp({yaml, "--out", out}, log);
    const std::string results_temp = "." + std::string(tag) + ".h5." + std::to_string(pid) + ".tmp";
    const auto is = [](const std::string& name) { return [name](const std::string& n) { return n == name; }; };
    const std::string last_checkpoint = "step_" + std::to_string(kSteps) + ".h5";
    bool seen = true;
    switch (t.phase) {
      case kStarting:
        break;
      case kTraining:
        seen = events.wait_for(results.path().string(), IN_CREATE, is(results_temp), pid);
        break;
      case kCheckpointing: {
        const std::string prefix = ".step_" + std::to_string(t.checkpoint_step) + ".h5.";
        seen = events.wait_for(ckpt_dir, IN_CREATE, [&](const std::string& n) { return starts_with(n, prefix); }, pid);
        break;
      }
      case kSampling:
        seen = events.wait_for(ckpt_dir, IN_MOVED_TO, is(last_checkpoint), pid);
        break;
      case kWriting:
        seen = events.wait_for(ckpt_dir, IN_MOVED_TO, is(last_checkpoint), pid) &&
               events.wait_for(results.path().string(), IN_MODIFY, is(results_temp), pid);
        break;
      default:
        break;
    }
    CHECK(seen);  // the run got as far as the phase to be hit
    sleep_seconds(t.delay);
    ::kill(pid, t.signal);
    const Child first = wait_runexp(pid, log);
    CAPTURE(first.status, first.err);
    // Killed, stopped cleanly (128 + signal), or done before the signal came: never failed.
    REQUIRE((first.status == -1 || first.status == 0 || first.status == 128 + t.signal));
    if (first.status == -1) ++killed;
    if (first.status == 0) ++completed;
    if (first.status == 128 + t.signal) {
      ++stopped;
      H5::H5File f(out, H5F_ACC_RDONLY);
      CHECK(diffusion::read_string_attribute(f.openGroup("/"), "status") == "interrupted");
    }
    const bool temp_left = fs::exists(results / results_temp);
    const bool checkpoint_temp_left =
        exists_name(ckpt_dir, [](const std::string& n) { return starts_with(n, ".step_") && ends_with(n, ".tmp"); });
    left_temp += temp_left;
    left_checkpoint_temp += checkpoint_temp_left;
    // The temporary results file is created when the run starts (before training) and renamed
    // into place when it ends: a run killed by SIGKILL in between leaves it.
    if (t.signal == SIGKILL && first.status == -1 && t.phase != kStarting && !fs::exists(out)) CHECK(temp_left);

    // The next run: --resume from the newest checkpoint, or, with none, the same run again.
    const auto latest = diffusion::find_latest_checkpoint(ckpt_dir);
    const Child next = latest ? run_runexp({"--resume", out}, log + "-next") : run_runexp({yaml, "--out", out}, log + "-next");
    CAPTURE(latest.has_value(), next.err);
    REQUIRE(next.status == 0);
    (latest ? resumed : rerun) += 1;
    if (latest) CHECK(next.err.find("resumed from " + latest->path) != std::string::npos);
    // It says what it removed.
    if (temp_left) CHECK(next.err.find("removed " + (results / results_temp)) != std::string::npos);
    if (checkpoint_temp_left) CHECK(next.err.find("removed " + ckpt_dir + "/.step_") != std::string::npos);
    require_same_run(ref, out);
    const auto left = leftovers(results.path());
    CAPTURE(left);
    REQUIRE(left.empty());
  }
  WARN(trials.size() << " trials: " << killed << " killed, " << stopped << " stopped cleanly, " << completed
                     << " done before the signal; " << resumed << " resumed, " << rerun
                     << " run again (no checkpoint yet); " << left_temp << " left a temporary results file, "
                     << left_checkpoint_temp << " a temporary checkpoint file");
  // Both kinds of next run happened, and killed runs left files for the next one to remove.
  CHECK(resumed > 0);
  CHECK(left_temp > 0);
  if (trials.size() >= 50) CHECK(rerun > 0);
}

namespace {

/// Wait (at most 120 s) until `path` exists.
bool wait_for_file(const std::string& path) {
  const auto t0 = std::chrono::steady_clock::now();
  while (!fs::exists(path)) {
    if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(120)) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

void touch(const std::string& path) { std::ofstream(path) << "partial"; }

}  // namespace

TEST_CASE("stale temporary files: a run removes those of killed runs in its folder and keeps a live run's",
          "[e2e][kill][output]") {
  ScratchDir dir("stale-temp"), logs("stale-temp-logs");
  const std::string yaml = logs / "x.yaml";
  std::ofstream(yaml) << kConfig;
  const std::string me = std::to_string(::getpid());  // a process that is alive, and no run

  // C: a live run writing in the same folder (started first: a run clears the folder when it
  // starts).
  const std::string c = dir / "c.h5";
  const pid_t c_pid = spawn_runexp({yaml, "train.steps=10000000", "--out", c}, logs / "c");
  const std::string c_temp = dir / (".c.h5." + std::to_string(c_pid) + ".tmp");
  REQUIRE(wait_for_file(c_temp));

  // A: killed by SIGKILL while training, as by the OOM killer: its temporary results file and
  // its lock file stay; a checkpoint write it was in the middle of would leave one more.
  const std::string a = dir / "a.h5";
  const pid_t a_pid = spawn_runexp({yaml, "train.steps=10000000", "--out", a}, logs / "a");
  const std::string a_temp = dir / (".a.h5." + std::to_string(a_pid) + ".tmp");
  REQUIRE(wait_for_file(a_temp));
  ::kill(a_pid, SIGKILL);
  REQUIRE(wait_runexp(a_pid, logs / "a").status == -1);
  REQUIRE(fs::exists(a_temp));
  REQUIRE(fs::exists(dir / ".a.h5.lock"));
  const std::string a_ckpt_temp = diffusion::checkpoint_dir_for(a) + "/.step_8.h5." + std::to_string(a_pid) + ".tmp";
  fs::create_directories(diffusion::checkpoint_dir_for(a));
  touch(a_ckpt_temp);
  const auto a_checkpoints = diffusion::list_checkpoints(diffusion::checkpoint_dir_for(a));

  // B's own leftovers named by a live process (as when a dead run's PID has been reused): B
  // holds its lock, so they are stale whatever the PID says.
  const std::string b = dir / "b.h5";
  const std::string b_temp = dir / (".b.h5." + me + ".tmp");
  const std::string b_ckpt_temp = diffusion::checkpoint_dir_for(b) + "/.step_4.h5." + me + ".tmp";
  touch(b_temp);
  fs::create_directories(diffusion::checkpoint_dir_for(b));
  touch(b_ckpt_temp);
  // A file of another output whose lock is free but whose named process is alive: maybe not a
  // run's at all, so it is kept.
  const std::string z_temp = dir / (".z.h5." + me + ".tmp");
  touch(z_temp);

  const Child b_run = run_runexp({yaml, "--out", b}, logs / "b");
  CAPTURE(b_run.err);
  CHECK(b_run.status == 0);
  // The dead run's files and its lock are gone, and B's own old ones; B says what it removed.
  CHECK(!fs::exists(a_temp));
  CHECK(!fs::exists(a_ckpt_temp));
  CHECK(!fs::exists(dir / ".a.h5.lock"));
  CHECK(!fs::exists(b_temp));
  CHECK(!fs::exists(b_ckpt_temp));
  for (const std::string& removed : {a_temp, a_ckpt_temp, b_temp, b_ckpt_temp})
    CHECK(b_run.err.find("removed " + removed + ", left by a run that was killed") != std::string::npos);
  // The live run's are untouched, and so is the file whose process lives.
  CHECK(fs::exists(c_temp));
  CHECK(fs::exists(dir / ".c.h5.lock"));
  CHECK(fs::exists(z_temp));
  // A's checkpoints are its own business: untouched.
  CHECK(diffusion::list_checkpoints(diffusion::checkpoint_dir_for(a)) == a_checkpoints);

  // C goes on undisturbed and, stopped, cleans up after itself.
  ::kill(c_pid, SIGTERM);
  const Child c_run = wait_runexp(c_pid, logs / "c");
  CAPTURE(c_run.err);
  CHECK(c_run.status == 128 + SIGTERM);
  CHECK(!fs::exists(c_temp));
  CHECK(!fs::exists(dir / ".c.h5.lock"));
  {
    H5::H5File f(c, H5F_ACC_RDONLY);
    CHECK(diffusion::read_string_attribute(f.openGroup("/"), "status") == "interrupted");
  }
}

TEST_CASE("output lock: a lock held for a moment is waited for, one held on is refused naming its process",
          "[output][kill]") {
  ScratchDir dir("lock-wait");
  const std::string out = dir / "x.h5";
  // Held the way a run clearing a dead run's files holds another output's lock, then released.
  std::optional<diffusion::OutputLock> brief;
  brief.emplace(out, std::try_to_lock);
  REQUIRE(brief->owns());
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    brief.reset();
  });
  const auto t0 = std::chrono::steady_clock::now();
  {
    const diffusion::OutputLock mine(out);  // waits, does not throw
    release.join();
    CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(50));
    CHECK(mine.owns());
    // Held: a try fails without throwing, a run is refused naming this process.
    CHECK(!diffusion::OutputLock(out, std::try_to_lock).owns());
    try {
      const diffusion::OutputLock second(out);
      FAIL("a second lock on a held output was granted");
    } catch (const diffusion::OutputConflict& e) {
      CHECK(std::string(e.what()).find("process " + std::to_string(::getpid()) + ";") != std::string::npos);
    }
  }
  // Released: the lock file is gone, and a try now succeeds.
  CHECK(!fs::exists(dir / ".x.h5.lock"));
  CHECK(diffusion::OutputLock(out, std::try_to_lock).owns());
}

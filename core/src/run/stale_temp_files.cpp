#include "diffusion/run/stale_temp_files.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <set>
#include <system_error>

namespace diffusion {
namespace fs = std::filesystem;

namespace {

struct TempFile {
  fs::path path;
  std::string of;  ///< the file it stands in for: "run.h5" for ".run.h5.123.tmp"
  long pid = 0;    ///< the process named in its name
};

/// ".<of>.<pid>.tmp" (the names results.cpp and checkpoint.cpp give their temporary files).
bool parse_temp_name(const std::string& name, TempFile& t) {
  const std::string suffix = ".tmp";
  if (name.size() < 1 + 1 + 1 + 1 + suffix.size() || name[0] != '.' ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return false;
  const std::string stem = name.substr(1, name.size() - 1 - suffix.size());  // "<of>.<pid>"
  const auto dot = stem.rfind('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == stem.size()) return false;
  const std::string digits = stem.substr(dot + 1);
  if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) return false;
  t.of = stem.substr(0, dot);
  t.pid = std::stol(digits);
  return true;
}

/// The temporary files directly in `dir` (regular files only: a link or a folder of that name
/// is not ours). None if `dir` does not exist.
std::vector<TempFile> temp_files_in(const fs::path& dir) {
  std::vector<TempFile> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    TempFile t;
    if (!parse_temp_name(it->path().filename().string(), t)) continue;
    std::error_code type_ec;
    if (!fs::is_regular_file(it->symlink_status(type_ec)) || type_ec) continue;
    t.path = it->path();
    found.push_back(std::move(t));
  }
  return found;
}

/// A process of that PID exists here (EPERM: it does, under another user).
bool process_exists(long pid) { return pid > 0 && (::kill(pid_t(pid), 0) == 0 || errno == EPERM); }

void remove_file(const fs::path& p, std::vector<std::string>& removed) {
  if (::unlink(p.c_str()) == 0) removed.push_back(p.string());
}

const std::string kCheckpointSuffix = ".ckpt";  // checkpoint_dir_for: "<out>.ckpt"

}  // namespace

std::vector<std::string> remove_stale_temp_files(const OutputLock& owner, const std::string& checkpoint_dir) {
  std::vector<std::string> removed;
  try {
    const fs::path out(owner.out_path());
    const fs::path folder = out.parent_path().empty() ? fs::path(".") : out.parent_path();
    const std::string own = out.filename().string();

    // Our own output's: we hold its lock, so whoever wrote these is gone, whatever their PID.
    for (const TempFile& t : temp_files_in(folder))
      if (t.of == own) remove_file(t.path, removed);
    if (!checkpoint_dir.empty())
      for (const TempFile& t : temp_files_in(checkpoint_dir)) remove_file(t.path, removed);

    // Other outputs of the folder that have temporary files beside them or in their checkpoint
    // folder.
    std::set<std::string> others;
    for (const TempFile& t : temp_files_in(folder))
      if (t.of != own) others.insert(t.of);
    std::error_code ec;
    for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.size() <= kCheckpointSuffix.size() ||
          name.compare(name.size() - kCheckpointSuffix.size(), kCheckpointSuffix.size(), kCheckpointSuffix) != 0)
        continue;
      const std::string of = name.substr(0, name.size() - kCheckpointSuffix.size());
      std::error_code type_ec;
      if (of == own || !fs::is_directory(it->symlink_status(type_ec)) || type_ec) continue;
      if (!temp_files_in(it->path()).empty()) others.insert(of);
    }
    for (const std::string& of : others) {
      // Held while we remove, so a run of that output cannot start writing one meanwhile (it
      // waits for us: see OutputLock). Released at the end of the iteration, which also removes
      // the dead run's lock file.
      const OutputLock theirs((folder / of).string(), std::try_to_lock);
      if (!theirs.owns()) continue;  // a live run: its files are its own
      for (const TempFile& t : temp_files_in(folder))
        if (t.of == of && !process_exists(t.pid)) remove_file(t.path, removed);
      for (const TempFile& t : temp_files_in(folder / (of + kCheckpointSuffix)))
        if (!process_exists(t.pid)) remove_file(t.path, removed);
    }
  } catch (const std::exception&) {
    // Best effort: what is left is removed by a later run.
  }
  return removed;
}

}  // namespace diffusion

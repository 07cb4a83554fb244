#pragma once
// Temporary files of runs that died. The results file is written to ".<out>.<pid>.tmp" beside
// the output and each checkpoint to ".step_<k>.h5.<pid>.tmp" in "<out>.ckpt/", then renamed into
// place; a run killed by SIGKILL (or by the machine going down) leaves them behind, and nothing
// else would ever remove them. The next run in the folder does.
//
// Whether the run that wrote such a file is still alive is told by the lock of its output
// (output_lock.hpp), not by the PID in the file's name: the kernel releases the lock when the
// process dies, whereas a PID may have been given to another process since, and says nothing of a
// process on another machine writing to a shared folder. The PID is used only to keep a file
// whose named process is alive here, in case it is not one of ours.
#include <string>
#include <vector>

#include "diffusion/run/output_lock.hpp"

namespace diffusion {

/// Remove what dead runs left in the folder of `owner.out_path()` and in `checkpoint_dir`:
///   - of the output itself, whose lock the caller holds (so no live run can be writing them):
///     every ".<out>.<n>.tmp" beside it and every ".<name>.<n>.tmp" in `checkpoint_dir`;
///   - of every other output F of that folder with such files, if F's lock is free (taken for
///     the moment of the removal, so no run of F can start writing meanwhile) and the process
///     named in a file's name does not exist: ".F.<n>.tmp", "F.ckpt/.<name>.<n>.tmp", and the
///     dead run's ".F.lock".
/// Call it before the run creates temporary files of its own. Best effort: a file that cannot be
/// removed is left; never throws. Returns the paths removed.
std::vector<std::string> remove_stale_temp_files(const OutputLock& owner, const std::string& checkpoint_dir);

}  // namespace diffusion

#pragma once
// A stop request that long metric loops honour. A metric of 10^4 points can run for minutes
// (exact W2 is ~n^3 in the worst case); a SIGTERM must end it within a second, not at its end.
// The run installs its stop flag around each metric with a StopRequestScope; the loops call
// throw_if_stop_requested() between pieces of work that take well under a second (one
// shortest-path step of the assignment solver, one row of MMD or the energy distance, one
// projection of sliced W2), and the run turns MetricStopped into an interrupted results file.
// Without a scope (a metric called from a test, the flow-matching coupling) nothing is polled.
#include <csignal>

namespace diffusion {

/// Thrown out of a metric's loop when the installed stop flag is set. Not an Error: code that
/// turns errors into messages must not mistake a stop for a failure.
struct MetricStopped {};

/// While alive, throw_if_stop_requested() on this thread throws MetricStopped once `*flag` is
/// non-zero (a null flag: never). Scopes nest; the innermost one is polled.
class StopRequestScope {
 public:
  explicit StopRequestScope(const volatile std::sig_atomic_t* flag);
  ~StopRequestScope();
  StopRequestScope(const StopRequestScope&) = delete;
  StopRequestScope& operator=(const StopRequestScope&) = delete;

 private:
  const volatile std::sig_atomic_t* previous_;
};

/// Throws MetricStopped if this thread's StopRequestScope has seen a stop request. One
/// thread-local load and, inside a scope, one volatile load: cheap enough for an inner loop
/// whose body is O(n).
void throw_if_stop_requested();

}  // namespace diffusion

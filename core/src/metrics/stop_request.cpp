#include "diffusion/metrics/stop_request.hpp"

namespace diffusion {
namespace {

// Per thread: a metric runs on the thread that called it; the core's pool threads never poll.
thread_local const volatile std::sig_atomic_t* t_stop_flag = nullptr;

}  // namespace

StopRequestScope::StopRequestScope(const volatile std::sig_atomic_t* flag) : previous_(t_stop_flag) {
  t_stop_flag = flag;
}

StopRequestScope::~StopRequestScope() { t_stop_flag = previous_; }

void throw_if_stop_requested() {
  if (t_stop_flag && *t_stop_flag) throw MetricStopped{};
}

}  // namespace diffusion

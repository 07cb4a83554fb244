#pragma once
// The core's own threads.
//
// BLAS is kept at one thread: on small matrices (a (256, 128) layer) OpenBLAS's threads cost
// more in hand-offs and spinning than they save. Instead the core splits its large matrix
// products and elementwise loops into blocks and runs them on a small pool: the calling thread
// plus num_threads() - 1 workers that spin briefly between jobs (a training step issues a job
// every few microseconds) and sleep when idle.
//
// Results do not depend on the thread count: blocks are fixed slices of the output, each
// computed exactly as the single-threaded code would compute it.
#include <cstddef>

namespace diffusion {

/// Threads used by the core's parallel loops (>= 1). Default: the DIFFUSION_THREADS
/// environment variable if set, else the number of CPUs this process may run on.
int num_threads();
/// Sets the thread count (n >= 1; 1 runs everything on the calling thread).
void set_num_threads(int n);

namespace detail {
void parallel_run(std::size_t tasks, void (*fn)(const void* ctx, std::size_t task),
                  const void* ctx);
}  // namespace detail

/// Calls fn(task) for every task in [0, tasks), spread over the core's threads; returns when
/// all have run. Runs serially when called from inside another parallel_for, when another
/// thread is using the pool, or with one thread. An exception from fn is rethrown here.
template <class Fn>
void parallel_for(std::size_t tasks, const Fn& fn) {
  detail::parallel_run(
      tasks, [](const void* ctx, std::size_t task) { (*static_cast<const Fn*>(ctx))(task); },
      &fn);
}

}  // namespace diffusion

// The core's thread pool: the caller plus num_threads() - 1 workers.
//
// A job is (fn, ctx, tasks); every thread takes task indices from a shared counter until none
// are left. Workers spin for a while after each job, because in a training step the next job
// comes a few microseconds later and a sleep/wake round trip costs more than that; after the
// spin they sleep on a condition variable so an idle process does not burn a core.
#include "diffusion/tensor/parallel.hpp"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "diffusion/tensor/tensor.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DIFFUSION_CPU_RELAX() _mm_pause()
#else
#define DIFFUSION_CPU_RELAX() ((void)0)
#endif

// OpenBLAS's thread control; weak, so the core still links against another BLAS.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace diffusion {
namespace {

// The core splits large products itself (see ops_linalg.cpp), so BLAS runs on one thread;
// left at its default, OpenBLAS's own threads would compete with ours for the same cores.
struct SingleThreadedBlas {
  SingleThreadedBlas() {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
  }
};
const SingleThreadedBlas single_threaded_blas;

// How long an idle worker spins before sleeping.
constexpr auto kSpin = std::chrono::microseconds(1000);

int default_threads() {
  if (const char* env = std::getenv("DIFFUSION_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (*env == '\0' || *end != '\0' || n < 1 || n > 1024)
      throw Error(std::string("DIFFUSION_THREADS: expected an integer in [1, 1024], got '") + env +
                  "'");
    return static_cast<int>(n);
  }
  // Capped: the blocks the core splits are small, and past a few threads the hand-offs cost
  // more than the extra cores give (set DIFFUSION_THREADS to go higher).
  constexpr int kMaxDefault = 8;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::clamp(CPU_COUNT(&set), 1, kMaxDefault);
  return std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, kMaxDefault);
}

thread_local bool t_in_job = false;

// The job slot is one 64-bit word: the job's generation (high half) and the next unclaimed
// task (low half). A thread claims a task by a compare-and-swap on the whole word, so a worker
// that wakes late, after its job is over, fails the swap instead of touching the next job;
// and the caller waits only for tasks some thread has claimed, never for a descheduled worker.
constexpr std::uint64_t kTaskBits = 32;
constexpr std::uint64_t kTaskMask = (std::uint64_t{1} << kTaskBits) - 1;

class Pool {
 public:
  explicit Pool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      stop_.store(true);
      slot_.fetch_add(std::uint64_t{1} << kTaskBits);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }
  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs a job if the pool is free; false if another thread holds it (caller runs serially).
  bool try_run(std::size_t tasks, void (*fn)(const void*, std::size_t), const void* ctx) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    // Close the finished job's slot before touching the job's fields: a worker that read the
    // old slot (every task claimed) and then sees the new, larger task count would otherwise
    // claim a task of the old generation with a compare-and-swap that still succeeds, run it
    // on the new job and count it in the new done_, and this wait would never end. The closing
    // generation has no claimable task, and its release store orders it before tasks_.
    const std::uint64_t closed = (slot_.load(std::memory_order_relaxed) >> kTaskBits) + 1;
    slot_.store((closed << kTaskBits) | kTaskMask, std::memory_order_release);
    fn_.store(fn, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    tasks_.store(tasks, std::memory_order_release);
    done_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    const std::uint64_t gen = closed + 1;
    {
      // Publishing under the sleep mutex: a worker about to sleep either sees the new job or
      // is already waiting and gets the notification.
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      slot_.store(gen << kTaskBits, std::memory_order_release);
    }
    wake_.notify_all();
    run_tasks(gen);
    // Wait for the tasks other threads claimed. Spin briefly, then yield: on a busy machine the
    // worker running them may have lost its core, and yielding lets it (or the process that
    // displaced it) run here instead of this thread burning the time slice.
    for (int spins = 0; done_.load(std::memory_order_acquire) != tasks; ++spins) {
      if (spins < 2000) DIFFUSION_CPU_RELAX();
      else std::this_thread::yield();
    }
    if (error_) std::rethrow_exception(error_);
    return true;
  }

 private:
  // Claims and runs tasks of job `gen` until none are left (or the job is no longer current).
  void run_tasks(std::uint64_t gen) {
    t_in_job = true;
    std::uint64_t s = slot_.load(std::memory_order_acquire);
    for (;;) {
      if ((s >> kTaskBits) != gen) break;
      const std::size_t task = s & kTaskMask;
      // Acquire: a task count of the next job implies its closed slot, so the swap below fails.
      if (task >= tasks_.load(std::memory_order_acquire)) break;
      if (!slot_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) continue;
      try {
        fn_.load(std::memory_order_relaxed)(ctx_.load(std::memory_order_relaxed), task);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
      }
      done_.fetch_add(1, std::memory_order_release);
      s = slot_.load(std::memory_order_acquire);
    }
    t_in_job = false;
  }

  void work() {
    std::uint64_t seen = 0;  // the last generation this worker has served
    for (;;) {
      // Spin, then sleep, until a new generation is published.
      const auto spin_until = std::chrono::steady_clock::now() + kSpin;
      std::uint64_t gen;
      // Spinning with yields: the next job usually comes within microseconds, but a runnable
      // thread of another process gets the core whenever it wants it.
      while ((gen = slot_.load(std::memory_order_acquire) >> kTaskBits) == seen &&
             std::chrono::steady_clock::now() < spin_until) {
        for (int k = 0; k < 64; ++k) DIFFUSION_CPU_RELAX();
        std::this_thread::yield();
      }
      if (gen == seen) {
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        wake_.wait(lock, [&] {
          return (slot_.load(std::memory_order_acquire) >> kTaskBits) != seen;
        });
        gen = slot_.load(std::memory_order_acquire) >> kTaskBits;
      }
      seen = gen;
      if (stop_.load()) return;
      run_tasks(gen);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex busy_;  // held by the thread running a job
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::atomic<std::uint64_t> slot_{0};
  std::atomic<std::size_t> done_{0};
  std::atomic<bool> stop_{false};
  // The current job; written before its generation is published.
  std::atomic<void (*)(const void*, std::size_t)> fn_{nullptr};
  std::atomic<const void*> ctx_{nullptr};
  std::atomic<std::size_t> tasks_{0};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

std::mutex g_pool_mutex;  // guards creating and replacing the pool
std::unique_ptr<Pool> g_pool;
std::atomic<int> g_threads{0};  // 0 until first asked

Pool* pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (!g_pool) {
    int n = g_threads.load();
    if (n == 0) g_threads = n = default_threads();
    g_pool = std::make_unique<Pool>(n);
  }
  return g_pool.get();
}

}  // namespace

int num_threads() {
  int n = g_threads.load();
  if (n == 0) {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    if (g_threads.load() == 0) g_threads = default_threads();
    n = g_threads.load();
  }
  return n;
}

void set_num_threads(int n) {
  if (n < 1) throw Error("set_num_threads: expected n >= 1, got " + std::to_string(n));
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (g_pool && g_pool->threads() == n) return;
  g_pool.reset();  // joins the old workers; must not be called from inside a job
  g_threads = n;
}

namespace detail {

void parallel_run(std::size_t tasks, void (*fn)(const void*, std::size_t), const void* ctx) {
  if (tasks == 0) return;
  if (tasks > 1 && !t_in_job && num_threads() > 1 && pool()->try_run(tasks, fn, ctx)) return;
  for (std::size_t i = 0; i < tasks; ++i) fn(ctx, i);
}

}  // namespace detail
}  // namespace diffusion

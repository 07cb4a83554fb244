// The core's thread pool, the fused linear + activation op, and the vectorised sin/cos: what
// they compute must not depend on the thread count, and must match the unfused ops and libm.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <thread>
#include <vector>

#include "diffusion/autodiff/autodiff.hpp"
#include "diffusion/tensor/parallel.hpp"
#include "grad_check.hpp"
#include "nn_test_helpers.hpp"

using namespace diffusion;
using grad_check::check_gradients;
using grad_check::normal;
using testing::ThreadCount;

namespace {

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Value and all three gradients of act(x W^T + b) for a loss sum(y * r).
std::vector<Tensor> fused_linear_run(Activation act, bool fused) {
  // Large enough to be cut into several blocks: 512 x 256 x 192 multiply-adds.
  Var x(normal({512, 192}, 1), true), w(normal({256, 192}, 2), true), b(normal({256}, 3), true);
  const Var y = fused ? linear(x, w, b, act) : [&] {
    const Var z = linear(x, w, b);
    switch (act) {
      case Activation::silu: return silu(z);
      case Activation::gelu: return gelu(z);
      case Activation::tanh: return tanh(z);
      case Activation::relu: return relu(z);
      case Activation::sigmoid: return sigmoid(z);
      case Activation::identity: return z;
    }
    return z;
  }();
  y.backward(normal({512, 256}, 4));
  return {y.value(), x.grad(), w.grad(), b.grad()};
}

}  // namespace

TEST_CASE("parallel_for runs every task exactly once, on any thread count", "[parallel]") {
  const int threads = GENERATE(1, 2, 3, 8);
  ThreadCount tc(threads);
  for (std::size_t tasks : {0u, 1u, 2u, 7u, 1000u}) {
    std::vector<std::atomic<int>> runs(tasks);
    parallel_for(tasks, [&](std::size_t i) { runs[i].fetch_add(1); });
    for (std::size_t i = 0; i < tasks; ++i) REQUIRE(runs[i].load() == 1);
  }
}

TEST_CASE("parallel_for rethrows a task's exception and stays usable", "[parallel]") {
  ThreadCount tc(2);
  REQUIRE_THROWS_WITH(parallel_for(16,
                                   [](std::size_t i) {
                                     if (i == 5) throw std::runtime_error("task 5 failed");
                                   }),
                      "task 5 failed");
  std::atomic<int> n{0};
  parallel_for(16, [&](std::size_t) { n.fetch_add(1); });
  REQUIRE(n.load() == 16);
}

TEST_CASE("a nested parallel_for runs serially inside the outer one", "[parallel]") {
  ThreadCount tc(2);
  std::atomic<int> n{0};
  parallel_for(4, [&](std::size_t) { parallel_for(8, [&](std::size_t) { n.fetch_add(1); }); });
  REQUIRE(n.load() == 32);
}

TEST_CASE("set_num_threads refuses zero", "[parallel]") {
  REQUIRE_THROWS_AS(set_num_threads(0), Error);
}

TEST_CASE("products and their gradients are bit-identical on 1, 2 and 3 threads", "[parallel]") {
  const Activation act = GENERATE(Activation::identity, Activation::silu, Activation::gelu);
  std::vector<Tensor> one;
  {
    ThreadCount tc(1);
    one = fused_linear_run(act, true);
  }
  for (int threads : {2, 3}) {
    ThreadCount tc(threads);
    const std::vector<Tensor> many = fused_linear_run(act, true);
    for (std::size_t i = 0; i < one.size(); ++i) {
      CAPTURE(threads, i);
      REQUIRE(same_bits(one[i], many[i]));
    }
  }
}

TEST_CASE("fused linear + activation equals the activation applied after linear", "[parallel]") {
  const Activation act = GENERATE(Activation::relu, Activation::silu, Activation::gelu,
                                  Activation::tanh, Activation::sigmoid);
  CAPTURE(static_cast<int>(act));
  const std::vector<Tensor> fused = fused_linear_run(act, true);
  const std::vector<Tensor> plain = fused_linear_run(act, false);
  for (std::size_t i = 0; i < fused.size(); ++i) {
    CAPTURE(i);
    REQUIRE(same_bits(fused[i], plain[i]));
  }
}

TEST_CASE("fused linear + activation gradients match finite differences", "[parallel][grad]") {
  const Activation act = GENERATE(Activation::silu, Activation::tanh, Activation::gelu);
  check_gradients([&](const std::vector<Var>& v) { return linear(v[0], v[1], v[2], act); },
                  {normal({3, 4}, 5), normal({5, 4}, 6), normal({5}, 7)});
}

TEST_CASE("sin and cos match libm within a few ulp, with libm's special values", "[parallel]") {
  std::vector<float> xs;
  for (int i = -200000; i <= 200000; ++i) xs.push_back(static_cast<float>(i) * 0.01f);  // +-2000
  for (float big : {8191.9f, 8192.0f, 8200.5f, 1e5f, -3e6f, 1e30f}) xs.push_back(big);
  const float inf = std::numeric_limits<float>::infinity();
  xs.push_back(inf), xs.push_back(-inf), xs.push_back(std::nanf(""));
  Tensor x = Tensor::from_shape({xs.size()});
  std::copy(xs.begin(), xs.end(), x.data());
  const Tensor s = sin(Var(x)).value(), c = cos(Var(x)).value();
  double worst = 0.0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double rs = std::sin(static_cast<double>(xs[i])), rc = std::cos(static_cast<double>(xs[i]));
    if (!std::isfinite(xs[i])) {
      REQUIRE(std::isnan(s(i)));
      REQUIRE(std::isnan(c(i)));
      continue;
    }
    // Absolute error against the double result: float rounding of x itself is not counted,
    // since both sides see the same float x.
    worst = std::max({worst, std::fabs(s(i) - rs), std::fabs(c(i) - rc)});
  }
  CAPTURE(worst);
  REQUIRE(worst < 4e-7);  // about 3 ulp at 1
}

// A worker that read the slot of a finished job (every task claimed) must not claim a task in it
// once the caller has begun writing the next job: it would run a task twice, or count one the
// new job never handed out, and the caller would wait forever (before the fix this hung within
// seconds every time). Jobs of alternating sizes back to back, on more threads than cores so
// workers are preempted at every point; a watchdog turns a hang into a failure.
TEST_CASE("back-to-back jobs of changing sizes each run every task exactly once", "[parallel]") {
  ThreadCount tc(3);
  constexpr std::size_t kMaxTasks = 9;
  std::vector<std::atomic<int>> runs(kMaxTasks);
  std::atomic<std::size_t> wrong{0};
  std::atomic<bool> finished{false};
  std::thread caller([&] {
    for (int job = 0; job < 2000000; ++job) {
      const std::size_t tasks = job % 2 ? kMaxTasks : 1 + job % 5;
      for (auto& r : runs) r.store(0, std::memory_order_relaxed);
      parallel_for(tasks, [&](std::size_t i) { runs[i].fetch_add(1, std::memory_order_relaxed); });
      for (std::size_t i = 0; i < kMaxTasks; ++i)
        if (runs[i].load() != (i < tasks ? 1 : 0)) ++wrong;
    }
    finished = true;
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!finished && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (!finished) {
    std::fprintf(stderr, "parallel_for hung: a job's wait never ended\n");
    std::abort();  // the hung caller cannot be joined
  }
  caller.join();
  REQUIRE(wrong == 0);
}

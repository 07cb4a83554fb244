// The memory pool: blocks are recycled by size, and a warm training step takes nothing new
// from the system.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>

#include "diffusion/autodiff/autodiff.hpp"
#include "diffusion/tensor/memory_pool.hpp"
#include "diffusion/nn/layers.hpp"
#include "diffusion/optim/optim.hpp"
#include "diffusion/tensor/random.hpp"

using namespace diffusion;

TEST_CASE("pool blocks are usable, aligned and recycled by size", "[pool]") {
  for (std::size_t bytes : {1u, 16u, 17u, 255u, 256u, 257u, 4096u, 100000u, 1u << 22}) {
    CAPTURE(bytes);
    auto* p = static_cast<unsigned char*>(pool_allocate(bytes));
    REQUIRE(p != nullptr);
    if (bytes >= 64) REQUIRE(reinterpret_cast<std::uintptr_t>(p) % 64 == 0);
    std::memset(p, 0xAB, bytes);  // ASan would flag a block smaller than asked for
    pool_deallocate(p, bytes);
    void* q = pool_allocate(bytes);
    if (pool_stats().recycles) REQUIRE(q == p);  // the same block, straight back
    pool_deallocate(q, bytes);
  }
  pool_release_cached();
  REQUIRE(pool_stats().cached_bytes == 0);
}

TEST_CASE("a warm training step takes no new memory from the system", "[pool]") {
  if (!pool_stats().recycles) {
    WARN("not checked: the pool passes blocks to malloc under AddressSanitizer");
    return;
  }
  Rng rng(3);
  MLP net({34, 64, 64, 2}, Activation::silu, rng);
  Adam opt(net.parameters(), AdamOptions{});
  const Tensor x = rng.normal({128, 34}), target = rng.normal({128, 2});
  const auto step = [&] {
    const Var loss = mse_loss(net.forward(Var(x)), Var(target));
    opt.zero_grad();
    loss.backward();
    opt.step();
  };
  for (int i = 0; i < 3; ++i) step();  // warm-up fills the free lists
  const std::size_t before = pool_stats().system_allocations;
  for (int i = 0; i < 20; ++i) step();
  REQUIRE(pool_stats().system_allocations == before);
}

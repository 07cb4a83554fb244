#pragma once
// Memory the core recycles instead of returning it to malloc.
//
// A training step makes and drops the same tensors, graph nodes and gradient buffers every
// step. Freed blocks are kept on free lists by size class and handed out again, so once the
// first steps have run, a step makes no heap allocation at all. Size classes are 16-byte steps
// up to 256 bytes, then four per power of two (at most 25% slack). Blocks of 64 bytes and more
// are 64-byte aligned (whole cache lines and AVX-512 loads). The pool keeps at most
// kPoolMaxCachedBytes of free blocks; past that, freed blocks go back to the system.
#include <cstddef>
#include <memory>
#include <new>

namespace diffusion {

/// Upper bound on the bytes the pool keeps in free lists.
constexpr std::size_t kPoolMaxCachedBytes = std::size_t{1} << 30;

/// A block of at least `bytes` bytes from the pool (std::bad_alloc if the system has none).
void* pool_allocate(std::size_t bytes);
/// Returns a block from pool_allocate(bytes), with the same `bytes`.
void pool_deallocate(void* p, std::size_t bytes) noexcept;
/// Gives every cached free block back to the system (e.g. after a large one-off job).
void pool_release_cached();

/// Statistics, for benchmarks and tests.
struct PoolStats {
  std::size_t system_allocations = 0;  ///< blocks obtained from the system so far
  std::size_t cached_bytes = 0;        ///< bytes now held in free lists
  bool recycles = true;  ///< false under AddressSanitizer, where every block goes to malloc
};
PoolStats pool_stats();

/// A standard allocator over the pool, for containers and allocate_shared.
template <class T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() noexcept = default;
  template <class U>
  PoolAllocator(const PoolAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(pool_allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { pool_deallocate(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const PoolAllocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const PoolAllocator<U>&) const noexcept { return false; }
};

}  // namespace diffusion

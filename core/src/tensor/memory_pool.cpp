// The size-class free lists behind pool_allocate (see memory_pool.hpp).
#include "diffusion/tensor/memory_pool.hpp"

#include <cstdint>
#include <cstdlib>
#include <mutex>

// Under AddressSanitizer the pool passes every block straight to malloc and free, so that
// ASan still sees each use after free (a recycled block would hide it).
#if defined(__SANITIZE_ADDRESS__)
#define DIFFUSION_POOL_PASS_THROUGH 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DIFFUSION_POOL_PASS_THROUGH 1
#endif
#endif
#ifndef DIFFUSION_POOL_PASS_THROUGH
#define DIFFUSION_POOL_PASS_THROUGH 0
#endif

namespace diffusion {
namespace {

constexpr std::size_t kSmallStep = 16, kSmallMax = 256;
constexpr std::size_t kSmallClasses = kSmallMax / kSmallStep;  // classes 1..16
constexpr std::size_t kClasses = kSmallClasses + 1 + 4 * 64;

// Class index and block size for a request: 16-byte steps up to 256, then four steps per
// power of two.
std::size_t class_of(std::size_t bytes, std::size_t* size) {
  if (bytes <= kSmallMax) {
    const std::size_t c = bytes == 0 ? 1 : (bytes + kSmallStep - 1) / kSmallStep;
    *size = c * kSmallStep;
    return c;
  }
  const std::size_t p = 63 - static_cast<std::size_t>(__builtin_clzll(bytes - 1));  // 2^p < bytes
  const std::size_t quarter = std::size_t{1} << (p - 2);
  const std::size_t k = (bytes - (std::size_t{1} << p) + quarter - 1) / quarter;  // 1..4
  *size = (std::size_t{1} << p) + k * quarter;
  return kSmallClasses + 1 + (p - 8) * 4 + (k - 1);
}

struct FreeBlock {
  FreeBlock* next;
};

class Pool {
 public:
  void* allocate(std::size_t bytes) {
    std::size_t size;
    const std::size_t c = class_of(bytes, &size);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (FreeBlock* b = DIFFUSION_POOL_PASS_THROUGH ? nullptr : free_[c]) {
        free_[c] = b->next;
        cached_ -= size;
        return b;
      }
      ++system_allocations_;
    }
    void* p = nullptr;
    if (posix_memalign(&p, size >= 64 ? 64 : 16, size) != 0) throw std::bad_alloc();
    return p;
  }

  void deallocate(void* p, std::size_t bytes) noexcept {
    if (!p) return;
    std::size_t size;
    const std::size_t c = class_of(bytes, &size);
    if (!DIFFUSION_POOL_PASS_THROUGH) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + size <= kPoolMaxCachedBytes) {
        auto* b = static_cast<FreeBlock*>(p);
        b->next = free_[c];
        free_[c] = b;
        cached_ += size;
        return;
      }
    }
    std::free(p);
  }

  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& head : free_)
      while (FreeBlock* b = head) {
        head = b->next;
        std::free(b);
      }
    cached_ = 0;
  }

  PoolStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {system_allocations_, cached_, !DIFFUSION_POOL_PASS_THROUGH};
  }

 private:
  std::mutex mutex_;
  FreeBlock* free_[kClasses] = {};
  std::size_t cached_ = 0;
  std::size_t system_allocations_ = 0;
};

// Never destroyed: static objects in other libraries may free tensors during exit.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

}  // namespace

void* pool_allocate(std::size_t bytes) { return pool().allocate(bytes); }
void pool_deallocate(void* p, std::size_t bytes) noexcept { pool().deallocate(p, bytes); }
void pool_release_cached() { pool().release(); }
PoolStats pool_stats() { return pool().stats(); }

}  // namespace diffusion

// Counts heap allocations in a whole process.
//
// The allocation functions defined here take the place of glibc's for every library in the
// process (the executable, libdiffusion_core, libstdc++'s operator new, OpenBLAS, torch): glibc
// supports replacing them this way. Each one bumps a counter and forwards to glibc's own
// allocator through its exported __libc_* entry points, so behaviour is otherwise unchanged.
// free is left alone: it is glibc's and frees these blocks as usual.
//
// Compiled into each benchmark executable (the executable comes first in symbol lookup) and built
// as a library that torch_runner.py's Python is started with through LD_PRELOAD, so both sides
// count the same.
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>

void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* p, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
void* __libc_valloc(size_t size);
void* __libc_pvalloc(size_t size);

static atomic_ullong allocations;

static void counted(void) { atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed); }

static void* counted_memalign(size_t alignment, size_t size) {
  return counted(), __libc_memalign(alignment, size);
}

// Declared in alloc_count.h (weakly, for builds without this file).
unsigned long long bench_alloc_count(void) {
  return atomic_load_explicit(&allocations, memory_order_relaxed);
}

void* malloc(size_t size) { return counted(), __libc_malloc(size); }
void* calloc(size_t count, size_t size) { return counted(), __libc_calloc(count, size); }
void* realloc(void* p, size_t size) { return counted(), __libc_realloc(p, size); }
void* memalign(size_t alignment, size_t size) { return counted_memalign(alignment, size); }
void* aligned_alloc(size_t alignment, size_t size) { return counted_memalign(alignment, size); }
void* valloc(size_t size) { return counted(), __libc_valloc(size); }
void* pvalloc(size_t size) { return counted(), __libc_pvalloc(size); }

int posix_memalign(void** out, size_t alignment, size_t size) {
  if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
  void* p = counted_memalign(alignment, size);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

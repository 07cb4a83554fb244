// Heap-allocation counter for the benchmarks (alloc_count.c).
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/// Calls to malloc, calloc, realloc and the aligned allocators (operator new included, as it
/// calls malloc) made by any thread of this process so far. Weak: null when the counter is not
/// linked in (sanitizer builds, whose runtime owns malloc).
unsigned long long bench_alloc_count(void) __attribute__((weak));

#ifdef __cplusplus
}
#endif

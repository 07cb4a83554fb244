// Keep large tensor buffers in the heap instead of fresh mmap()s.
//
// A training step allocates and frees many buffers of 128 KiB and more ((256, 128) floats is
// exactly glibc's initial mmap threshold). Served by mmap, each one costs page faults on first
// touch and an munmap on free: measured on the flagship step, that doubled the step time.
// Raising the thresholds when the core library loads lets freed buffers be reused at once.
// (The setting is process-wide; it only trades a little retained memory for speed.)
#include <malloc.h>

namespace diffusion {
namespace {

struct AllocatorTuning {
  AllocatorTuning() {
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    mallopt(M_TOP_PAD, 64 << 20);
  }
};

const AllocatorTuning tuning;

}  // namespace
}  // namespace diffusion

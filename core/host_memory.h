// How the process's host heap treats freed blocks.
#pragma once

namespace hg {

// glibc's malloc hands a large freed block back to the kernel (blocks over M_MMAP_THRESHOLD are
// their own mappings; the heap's top is trimmed past M_TRIM_THRESHOLD). A training step frees and
// allocates the same large buffers again every step, so every page of them faulted in again and
// the kernel zeroed it again: 4% of a bf16 step in clear_page plus the faults on Sapphire Rapids
// (perf). This keeps freed blocks in the heap for the next step: blocks up to 32 MiB (glibc's
// largest threshold on 64-bit) come from the heap and it is never trimmed. The peak footprint is
// the same; the memory is returned when the process ends. Call once, before the first large
// allocation (the commands and benchmarks do, first thing). A no-op without glibc.
void keep_freed_host_memory();

}  // namespace hg

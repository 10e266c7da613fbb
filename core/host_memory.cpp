#include "core/host_memory.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace hg {

void keep_freed_host_memory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum (HEAP_MAX_SIZE / 2 on 64-bit)
  mallopt(M_TRIM_THRESHOLD, -1);        // never trim the heap's top (the value is unsigned)
#endif
}

}  // namespace hg

// The fiber scheduler behind cuda_emulation.h: one block at a time, its threads as fibers on the
// calling thread, run in passes. A pass resumes every runnable fiber until it
// blocks (barrier, shuffle) or returns; then complete warp exchanges are resolved, and when none
// is, the block barrier is released if every live thread waits there. Anything else is misuse
// or deadlock and fails the launch.
#include "tests/cuda_emulation/cuda_emulation.h"

#include <sys/mman.h>
#include <ucontext.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace hg::emu {
namespace {

constexpr int kWarpSize = 32;
constexpr unsigned kMaxThreads = 1024;
constexpr size_t kMaxDynamicShared = 48 * 1024;  // without cudaFuncSetAttribute, as on a GPU
constexpr size_t kStackBytes = 256 * 1024;       // kernels' frames are small; -O0 needs more
constexpr size_t kGuardBytes = 4096;             // PROT_NONE below each stack: overflow faults

// A fiber's saved execution context. On x86-64 a stack pointer (the callee-saved registers sit on
// the fiber's own stack, pushed by hg_emu_switch_context below; the SSE and x87 control words are
// not switched: kernels never change them): a switch is a few instructions, where glibc's swapcontext makes a system call (its signal mask) every time,
// which made the emulated trainer path 50 times slower. Elsewhere, ucontext.
#if defined(__x86_64__)
struct Context {
  void* sp = nullptr;
};
extern "C" void hg_emu_switch_context(void** save_sp, void* load_sp);
asm(R"(
  .text
  .p2align 4
  .globl hg_emu_switch_context
  .type hg_emu_switch_context, @function
hg_emu_switch_context:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size hg_emu_switch_context, .-hg_emu_switch_context
)");
void swap_context(Context* from, Context* to) { hg_emu_switch_context(&from->sp, to->sp); }
// A context that starts `entry` (which never returns) on [stack, stack + bytes): the registers
// hg_emu_switch_context pops, below `entry` as the return address.
void make_context(Context* c, char* stack, size_t bytes, void (*entry)()) {
  auto top = reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;                            // entry's own return address: never used
  *--sp = reinterpret_cast<void*>(entry);     // at top - 16: entry starts with rsp = 8 mod 16
  for (int r = 0; r < 6; ++r) *--sp = nullptr;  // rbp, rbx, r12 .. r15
  c->sp = sp;
}
#else
struct Context {
  ucontext_t context;
};
void swap_context(Context* from, Context* to) { swapcontext(&from->context, &to->context); }
void make_context(Context* c, char* stack, size_t bytes, void (*entry)()) {
  getcontext(&c->context);
  c->context.uc_stack.ss_sp = stack;
  c->context.uc_stack.ss_size = bytes;
  c->context.uc_link = nullptr;  // entry switches back itself
  makecontext(&c->context, entry, 0);
}
#endif

enum class State { Runnable, AtBarrier, AtShuffle, Done };

struct Fiber {
  Context context;
  char* stack = nullptr;
  uint3 index;
  int lane = 0;  // linear thread index mod 32 (warp w holds fibers 32w .. 32w+31)
  State state = State::Runnable;
  unsigned mask = 0;  // shuffle: the lanes it waits for
  int src_lane = 0;   //          the lane it reads
  uint64_t deposit = 0, result = 0;
};

// Stacks are mapped once per OS thread and reused by every launch.
struct StackPool {
  std::vector<char*> stacks;
  ~StackPool() {
    for (char* s : stacks) {
#if defined(__SANITIZE_ADDRESS__)
      // A fiber's last frames never return (it switches away for good), so ASan's poisoned
      // redzones stay in the shadow; memory mapped here later would inherit them (a false report
      // in whatever reuses the addresses, as LeakSanitizer's symboliser at exit once did).
      __asan_unpoison_memory_region(s - kGuardBytes, kStackBytes + kGuardBytes);
#endif
      munmap(s - kGuardBytes, kStackBytes + kGuardBytes);
    }
  }
  char* get(size_t i) {
    while (stacks.size() <= i) {
      void* p = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::runtime_error("cuda emulation: cannot map a fiber stack");
      mprotect(p, kGuardBytes, PROT_NONE);
      stacks.push_back(static_cast<char*>(p) + kGuardBytes);
    }
    return stacks[i];
  }
};

struct Block {
  dim3 grid, dims;
  uint3 index;
  std::vector<Fiber> fibers;
  Fiber* current = nullptr;
  Context scheduler;
  std::unique_ptr<std::max_align_t[]> shared;
  const std::function<void()>* body = nullptr;
  std::string error;  // set by a fiber whose body threw
};

thread_local Block* running = nullptr;

// AddressSanitizer must be told about every stack switch (BUILD_TYPE=Asan), or it reports
// false errors on the fibers' stacks. A fiber learns the scheduler's stack bounds when it is
// entered (finish_switch_fiber reports the stack switched from).
#if defined(__SANITIZE_ADDRESS__)
thread_local void* fake_stack = nullptr;
thread_local const void* scheduler_bottom = nullptr;
thread_local size_t scheduler_size = 0;
void switch_to_fiber(Context* from, Context* to, const void* bottom) {
  __sanitizer_start_switch_fiber(&fake_stack, bottom, kStackBytes);
  swap_context(from, to);
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
}
void switch_to_scheduler(Context* from, Context* to, bool exiting) {
  void* fiber_fake_stack = nullptr;
  __sanitizer_start_switch_fiber(exiting ? nullptr : &fiber_fake_stack, scheduler_bottom,
                                 scheduler_size);
  swap_context(from, to);
  __sanitizer_finish_switch_fiber(fiber_fake_stack, &scheduler_bottom, &scheduler_size);
}
void fiber_started() {
  __sanitizer_finish_switch_fiber(nullptr, &scheduler_bottom, &scheduler_size);
}
#else
void switch_to_fiber(Context* from, Context* to, const void*) { swap_context(from, to); }
void switch_to_scheduler(Context* from, Context* to, bool) { swap_context(from, to); }
void fiber_started() {}
#endif

Block& block() {
  if (running == nullptr || running->current == nullptr)
    throw std::logic_error("cuda emulation: a device builtin was called outside a launch");
  return *running;
}

std::string name(const Block& b, const Fiber& f) {
  auto s = [](unsigned v) { return std::to_string(v); };
  return "block (" + s(b.index.x) + "," + s(b.index.y) + "," + s(b.index.z) + ") thread (" +
         s(f.index.x) + "," + s(f.index.y) + "," + s(f.index.z) + ")";
}

[[noreturn]] void fiber_main() {
  fiber_started();
  Block& b = *running;
  try {
    (*b.body)();
  } catch (const std::exception& e) {
    if (b.error.empty()) b.error = name(b, *b.current) + " threw: " + e.what();
  }
  b.current->state = State::Done;
  switch_to_scheduler(&b.current->context, &b.scheduler, true);  // never resumed
  __builtin_unreachable();
}

void yield(Fiber& f, State state) {
  f.state = state;
  switch_to_scheduler(&f.context, &running->scheduler, false);
}

[[noreturn]] void fail(const Block& b, const std::string& what) {
  throw std::runtime_error("cuda emulation: " + what + " (grid " + std::to_string(b.grid.x) + "x" +
                           std::to_string(b.grid.y) + "x" + std::to_string(b.grid.z) + ", block " +
                           std::to_string(b.dims.x) + "x" + std::to_string(b.dims.y) + "x" +
                           std::to_string(b.dims.z) + ")");
}

// Resolves warp `w` if every lane of its waiting lanes' mask has arrived; true when it did.
bool resolve_warp(Block& b, int w) {
  const int first = w * kWarpSize;
  const int count = std::min<int>(kWarpSize, static_cast<int>(b.fibers.size()) - first);
  Fiber* lanes = &b.fibers[first];
  int waiting = -1;
  for (int l = 0; l < count; ++l)
    if (lanes[l].state == State::AtShuffle) waiting = l;
  if (waiting < 0) return false;
  const unsigned mask = lanes[waiting].mask;
  for (int l = 0; l < kWarpSize; ++l) {
    if (!(mask >> l & 1u)) continue;
    if (l >= count)
      fail(b, name(b, lanes[waiting]) + ": shuffle mask names lane " + std::to_string(l) +
                  ", which does not exist (the block's last warp is partial)");
    if (lanes[l].state == State::Done)
      fail(b, name(b, lanes[l]) + " exited while lanes of its warp wait in a shuffle");
    if (lanes[l].state != State::AtShuffle) return false;  // deadlock unless a barrier frees it
    if (lanes[l].mask != mask)
      fail(b, name(b, lanes[l]) + ": lanes of one warp shuffle with different masks");
  }
  for (int l = 0; l < count; ++l) {
    Fiber& f = lanes[l];
    if (f.state != State::AtShuffle || !(mask >> l & 1u)) continue;
    if (f.src_lane < 0 || f.src_lane >= kWarpSize || !(mask >> f.src_lane & 1u))
      fail(b, name(b, f) + ": shuffle reads lane " + std::to_string(f.src_lane) +
                  ", outside the mask");
    f.result = lanes[f.src_lane].deposit;
  }
  for (int l = 0; l < count; ++l)
    if (lanes[l].state == State::AtShuffle && (mask >> l & 1u)) lanes[l].state = State::Runnable;
  return true;
}

// After a pass: frees what can be freed; false when every thread is done.
bool release(Block& b) {
  bool any_live = false, freed = false;
  for (const Fiber& f : b.fibers) any_live |= f.state != State::Done;
  if (!any_live) return false;
  const int warps = static_cast<int>((b.fibers.size() + kWarpSize - 1) / kWarpSize);
  for (int w = 0; w < warps; ++w) freed |= resolve_warp(b, w);
  if (freed) return true;
  const Fiber* exited = nullptr;
  for (const Fiber& f : b.fibers) {
    if (f.state == State::Done && exited == nullptr) exited = &f;
    if (f.state == State::AtShuffle)
      fail(b, name(b, f) + " waits in a shuffle that some lane of its mask never reaches");
  }
  if (exited != nullptr)
    fail(b, name(b, *exited) + " exited while other threads of its block wait at __syncthreads");
  for (Fiber& f : b.fibers) f.state = State::Runnable;  // every live thread is at the barrier
  return true;
}

// A fresh context for thread i of the block, starting at fiber_main on its own stack. Its own
// function: ucontext's getcontext returns twice, which must not clobber a caller's loop variable.
void make_fiber(Block& b, size_t i, char* stack) {
  Fiber& f = b.fibers[i];
  const unsigned t = static_cast<unsigned>(i);
  f = Fiber{};
  f.index = {t % b.dims.x, t / b.dims.x % b.dims.y, t / (b.dims.x * b.dims.y)};
  f.lane = static_cast<int>(i) % kWarpSize;
  f.stack = stack;
#if defined(__SANITIZE_ADDRESS__)
  // The stack's previous fiber ended inside switch_to_scheduler, called from fiber_main: those
  // two frames never returned, so their redzones are still poisoned in the shadow, and a new
  // fiber's frames at those addresses (a kernel's by-value arguments, once its frame grew) would
  // be reported as stack underflows. No frame of a fresh fiber is live yet; the dead frames sit
  // at the stack's top (every deeper frame returned, unpoisoning itself), so the top
  // kStaleFrameBytes are cleaned: the whole 256 KiB stack per fiber per block made the emulated
  // trainer tests several times slower.
  constexpr size_t kStaleFrameBytes = 16 * 1024;
  __asan_unpoison_memory_region(stack + kStackBytes - kStaleFrameBytes, kStaleFrameBytes);
#endif
  make_context(&f.context, stack, kStackBytes, fiber_main);
}

void run_block(Block& b, StackPool& pool) {
  for (size_t i = 0; i < b.fibers.size(); ++i) make_fiber(b, i, pool.get(i));
  do {
    for (Fiber& f : b.fibers) {
      if (f.state != State::Runnable) continue;
      b.current = &f;
      switch_to_fiber(&b.scheduler, &f.context, f.stack);
      if (!b.error.empty()) fail(b, b.error);
    }
    b.current = nullptr;
  } while (release(b));
}

}  // namespace

const uint3& thread_idx() { return block().current->index; }
const uint3& block_idx() { return block().index; }
const dim3& block_dim() { return block().dims; }
const dim3& grid_dim() { return block().grid; }
int lane_id() { return block().current->lane; }

int segment_base(int width) {
  if (width <= 0 || width > kWarpSize || (width & (width - 1)) != 0)
    throw std::runtime_error("cuda emulation: shuffle width " + std::to_string(width) +
                             " is not a power of two <= 32");
  return lane_id() & ~(width - 1);
}

void syncthreads() { yield(*block().current, State::AtBarrier); }

uint64_t warp_exchange(unsigned mask, uint64_t bits, int src_lane) {
  Fiber& f = *block().current;
  if (!(mask >> f.lane & 1u))
    throw std::runtime_error("cuda emulation: a lane shuffles with a mask that excludes itself");
  f.mask = mask;
  f.deposit = bits;
  f.src_lane = src_lane;
  yield(f, State::AtShuffle);
  return f.result;
}

void* dynamic_shared_memory() { return block().shared.get(); }

void run_grid(dim3 grid, dim3 dims, size_t shared_bytes, const std::function<void()>& body) {
  if (running != nullptr) throw std::logic_error("cuda emulation: a launch inside a launch");
  // CUDA's limits on every current GPU: 1024 threads per block (z <= 64), grid y and z <= 65535.
  const unsigned threads = dims.x * dims.y * dims.z;
  const bool shape_ok = threads > 0 && threads <= kMaxThreads && dims.z <= 64 && grid.x > 0 &&
                        grid.x <= 0x7fffffffu && grid.y > 0 && grid.y <= 65535 && grid.z > 0 &&
                        grid.z <= 65535;
  if (!shape_ok)
    throw std::runtime_error("cuda emulation: invalid launch shape (block " +
                             std::to_string(dims.x) + "x" + std::to_string(dims.y) + "x" +
                             std::to_string(dims.z) + ", grid " + std::to_string(grid.x) + "x" +
                             std::to_string(grid.y) + "x" + std::to_string(grid.z) + ")");
  if (shared_bytes > kMaxDynamicShared)
    throw std::runtime_error("cuda emulation: " + std::to_string(shared_bytes) +
                             " bytes of dynamic shared memory, more than 48 KiB");
  thread_local StackPool pool;
  Block b;
  b.grid = grid;
  b.dims = dims;
  b.body = &body;
  b.fibers.resize(threads);
  const size_t words = (shared_bytes + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t);
  b.shared.reset(new std::max_align_t[words > 0 ? words : 1]);
  struct Reset {
    ~Reset() { running = nullptr; }
  } reset;
  running = &b;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        b.index = {x, y, z};
        std::memset(static_cast<void*>(b.shared.get()), 0xFF, shared_bytes);
        run_block(b, pool);
      }
}

}  // namespace hg::emu

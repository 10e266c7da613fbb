// The emulated CUDA runtime and cuBLAS of cuda_runtime.h / cublas_v2.h: one device whose memory
// is a guarded arena. The arena is mapped PROT_NONE and opened (read/write) only while a
// DeviceAccess lives: inside emulated kernels, copies, memsets and gemms. A host access outside
// them faults, and the handler below names the address before the previous handler (the
// sanitizers' report, or the default: the process dies) takes over.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/gemm.h"
#include "tests/cuda_emulation/runtime/cublas_v2.h"
#include "tests/cuda_emulation/runtime/cuda_runtime.h"

namespace hg::emu {
namespace {

constexpr size_t kReservedBytes = size_t(16) << 30;  // address space only (MAP_NORESERVE)
constexpr size_t kAlignment = 256;                   // cudaMalloc's
constexpr size_t kPage = 4096;

struct Arena {
  std::mutex mutex;
  char* base = nullptr;
  size_t top = 0;        // bytes handed out so far (the bump pointer)
  size_t protected_ = 0;  // bytes [0, protected_) whose protection follows `open`
  int open = 0;          // live DeviceAccess objects
  std::map<char*, size_t> live;                      // allocation -> rounded size
  std::map<size_t, std::vector<char*>> free_lists;   // rounded size -> freed allocations
};

struct sigaction previous_segv;

void report_host_access(int signal, siginfo_t* info, void* context);

Arena& arena() {
  static Arena* a = [] {
    auto* created = new Arena;  // never freed: Tensors may outlive static destructors
    void* p = mmap(nullptr, kReservedBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
      std::fprintf(stderr, "cuda emulation: cannot reserve the device arena\n");
      std::abort();
    }
    created->base = static_cast<char*>(p);
    struct sigaction action {};
    action.sa_sigaction = report_host_access;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &previous_segv);
    return created;
  }();
  return *a;
}

bool in_arena(const void* p) {
  const Arena& a = arena();
  const char* c = static_cast<const char*>(p);
  return c >= a.base && c < a.base + kReservedBytes;
}

// Async-signal-safe: write(2) only, then the previous handler gets the re-raised fault.
void report_host_access(int, siginfo_t* info, void*) {
  if (in_arena(info->si_addr)) {
    static const char message[] =
        "cuda emulation: the host read or wrote emulated device memory outside a kernel or copy "
        "(a device pointer dereferenced on the host; tests/cuda_emulation/runtime)\n";
    [[maybe_unused]] ssize_t n = write(2, message, sizeof message - 1);
  }
  sigaction(SIGSEGV, &previous_segv, nullptr);  // the faulting access repeats into it
}

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// What the emulated device holds: HG_EMULATED_DEVICE_MIB, else the whole arena.
size_t device_bytes() {
  static const size_t bytes = [] {
    const char* mib = std::getenv("HG_EMULATED_DEVICE_MIB");
    const double value = mib != nullptr ? std::atof(mib) : 0.0;
    return value > 0 ? std::min(kReservedBytes, static_cast<size_t>(value * 1024 * 1024))
                     : kReservedBytes;
  }();
  return bytes;
}

// With the mutex held: pages [0, top) follow the open state.
void sync_protection(Arena& a) {
  const size_t end = round_up(a.top, kPage);
  if (a.open > 0 && end > a.protected_) {
    mprotect(a.base + a.protected_, end - a.protected_, PROT_READ | PROT_WRITE);
    a.protected_ = end;
  }
}

}  // namespace

bool on_device(const void* p) { return in_arena(p); }

void require_device_pointer(const char* kernel, const void* p) {
  if (!in_arena(p))
    throw std::runtime_error(std::string("cuda emulation: kernel ") + kernel +
                             " was given a host pointer (an illegal address on a GPU)");
}

DeviceAccess::DeviceAccess() {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  if (a.open++ == 0 && a.top > 0) {
    a.protected_ = round_up(a.top, kPage);
    mprotect(a.base, a.protected_, PROT_READ | PROT_WRITE);
  }
}

DeviceAccess::~DeviceAccess() {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  if (--a.open == 0 && a.protected_ > 0) mprotect(a.base, a.protected_, PROT_NONE);
}

}  // namespace hg::emu

using hg::emu::DeviceAccess;

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetLastError() { return cudaSuccess; }  // emulated launches throw instead
const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument (emulated device)";
    case cudaErrorMemoryAllocation: return "out of memory (emulated device)";
    default: return "unknown error (emulated device)";
  }
}

// New memory holds 0xFF bytes (NaN floats), as undefined as cudaMalloc's: a read before a write
// shows.
cudaError_t cudaMalloc(void** p, size_t bytes) {
  using namespace hg::emu;
  auto& a = arena();
  const size_t size = round_up(bytes == 0 ? 1 : bytes, kAlignment);
  char* ptr = nullptr;
  {
    std::lock_guard<std::mutex> lock(a.mutex);
    auto& reuse = a.free_lists[size];
    if (!reuse.empty()) {
      ptr = reuse.back();
      reuse.pop_back();
    } else {
      if (a.top + size > device_bytes()) return cudaErrorMemoryAllocation;
      ptr = a.base + a.top;
      a.top += size;
    }
    a.live[ptr] = size;
  }
  DeviceAccess open;
  {
    std::lock_guard<std::mutex> lock(a.mutex);
    sync_protection(a);
  }
  std::memset(ptr, 0xFF, size);
  *p = ptr;
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  auto& a = hg::emu::arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  size_t held = 0;
  for (const auto& [p, size] : a.live) held += size;
  *total_bytes = hg::emu::device_bytes();
  *free_bytes = *total_bytes - std::min(held, *total_bytes);
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (p == nullptr) return cudaSuccess;
  auto& a = hg::emu::arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  auto it = a.live.find(static_cast<char*>(p));
  if (it == a.live.end()) return cudaErrorInvalidValue;
  a.free_lists[it->second].push_back(it->first);
  a.live.erase(it);
  return cudaSuccess;
}

// The direction must match where the pointers live, as a real copy's would have to.
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  using hg::emu::in_arena;
  if (bytes == 0) return cudaSuccess;
  const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (in_arena(dst) != dst_device || in_arena(src) != src_device) return cudaErrorInvalidValue;
  DeviceAccess open;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (!hg::emu::in_arena(p)) return cudaErrorInvalidValue;
  DeviceAccess open;
  std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
  return cudaMemset(p, value, bytes);
}

// Streams and events: every emulated call is complete when it returns, so a stream has nothing
// to order and an event is done once recorded. They are real objects so that a double destroy
// or a use after destroy shows under the sanitizers.
struct EmulatedStream {
  unsigned flags = 0;
};
struct EmulatedEvent {
  bool recorded = false;
};
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  *stream = new EmulatedStream{flags};
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t event, unsigned) {
  return event && event->recorded ? cudaSuccess : cudaErrorInvalidValue;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) {
  *event = new EmulatedEvent{};
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  event->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  return event->recorded ? cudaSuccess : cudaErrorInvalidValue;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}

namespace {

// A product's operands and result must be device memory (null: an empty operand).
void require_device_operands(const char* call, const void* A, const void* B, const void* C) {
  for (const void* p : {A, B, C})
    if (p != nullptr) hg::emu::require_device_pointer(call, p);
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = nullptr;
  return CUBLAS_STATUS_SUCCESS;
}

// Column-major C (m x n) = op(A)·op(B) is the row-major Cᵀ (n x m) = op(B)ᵀ·op(A)ᵀ, and a
// column-major matrix read row-major is its transpose: so the row-major product of B and A.
cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t transa, cublasOperation_t transb,
                           int m, int n, int k, const float* alpha, const float* A, int lda,
                           const float* B, int ldb, const float* beta, float* C, int ldc) {
  require_device_operands("cublasSgemm", A, B, C);
  DeviceAccess open;
  hg::gemm(hg::MatmulPrecision::Fp32, transb == CUBLAS_OP_T, transa == CUBLAS_OP_T, n, m, k, *alpha,
           B, ldb, A, lda, *beta, C, ldc);
  return CUBLAS_STATUS_SUCCESS;
}

namespace {

// A column-major bfloat16 operand widened to float32 (exact), keeping its leading dimension:
// `columns` columns of `ld` elements, the last one only `rows` long.
std::vector<float> widened(const void* X, int rows, int columns, int ld) {
  const auto* bits = static_cast<const uint16_t*>(X);
  const size_t n = columns == 0 ? 0 : size_t(columns - 1) * ld + rows;
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = hg::bf16_to_float(bits[i]);
  return out;
}

}  // namespace

cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t transa, cublasOperation_t transb,
                            int m, int n, int k, const void* alpha, const void* A,
                            cudaDataType a_type, int lda, const void* B, cudaDataType b_type,
                            int ldb, const void* beta, void* C, cudaDataType c_type, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t) {
  if (a_type != CUDA_R_16BF || b_type != CUDA_R_16BF || c_type != CUDA_R_32F ||
      compute != CUBLAS_COMPUTE_32F)
    throw std::runtime_error("cuda emulation: cublasGemmEx supports bf16 x bf16 -> fp32 only");
  require_device_operands("cublasGemmEx", A, B, C);
  DeviceAccess open;
  // op(A) is m x k: stored m x k (N) or k x m (T), column-major; op(B) k x n likewise.
  const std::vector<float> a = transa == CUBLAS_OP_N ? widened(A, m, k, lda) : widened(A, k, m, lda);
  const std::vector<float> b = transb == CUBLAS_OP_N ? widened(B, k, n, ldb) : widened(B, n, k, ldb);
  hg::gemm(hg::MatmulPrecision::Fp32, transb == CUBLAS_OP_T, transa == CUBLAS_OP_T, n, m, k,
           *static_cast<const float*>(alpha), b.data(), ldb, a.data(), lda,
           *static_cast<const float*>(beta), static_cast<float*>(C), ldc);
  return CUBLAS_STATUS_SUCCESS;
}

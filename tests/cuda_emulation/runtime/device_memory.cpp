// The emulated CUDA runtime and cuBLAS of cuda_runtime.h / cublas_v2.h: one device whose memory
// is a guarded arena. The arena is mapped PROT_NONE and opened (read/write) only while a
// DeviceAccess lives: inside emulated kernels, copies, memsets and gemms. A host access outside
// them faults, and the handler below names the address before the previous handler (the
// sanitizers' report, or the default: the process dies) takes over.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/bf16.h"
#include "core/gemm.h"
#include "tests/cuda_emulation/runtime/cublasLt.h"
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

cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) { return cudaMalloc(p, bytes); }
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
  *pool = nullptr;  // one emulated device, whose "pool" is the arena's free lists
  return device == 0 ? cudaSuccess : cudaErrorInvalidValue;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*) { return cudaSuccess; }

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

// Streams and events. Only NCCL's point-to-point work is asynchronous (hg::emu::AsyncWork): a
// stream keeps what is not yet complete, an event recorded on it takes a share of that, and a
// query completes what it can. Everything else is done when its call returns. Real objects, so
// that a double destroy or a use after destroy shows under the sanitizers.
using WorkList = std::vector<std::shared_ptr<hg::emu::AsyncWork>>;
struct EmulatedStream {
  unsigned flags = 0;
  WorkList pending;
};
struct EmulatedEvent {
  bool recorded = false;
  WorkList waits_for;
};

namespace {
// Drops the complete work of `list`; true when none is left.
bool complete_what_can(WorkList& list) {
  std::erase_if(list, [](const std::shared_ptr<hg::emu::AsyncWork>& w) { return w->complete(); });
  return list.empty();
}
}  // namespace

void hg::emu::enqueue(cudaStream_t stream, std::shared_ptr<AsyncWork> work) {
  if (stream == nullptr) throw std::logic_error("emulated stream: asynchronous work on stream 0");
  stream->pending.push_back(std::move(work));
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  *stream = new EmulatedStream{flags, {}};
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (stream != nullptr)
    while (!complete_what_can(stream->pending)) std::this_thread::yield();
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  cudaStreamSynchronize(stream);  // as CUDA: work queued before the destroy still completes
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  if (event == nullptr || !event->recorded) return cudaErrorInvalidValue;
  if (stream != nullptr)  // the stream's later work waits for the event's
    stream->pending.insert(stream->pending.end(), event->waits_for.begin(), event->waits_for.end());
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) {
  *event = new EmulatedEvent{};
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  event->recorded = true;
  event->waits_for.clear();
  if (stream != nullptr) {
    complete_what_can(stream->pending);
    event->waits_for = stream->pending;
  }
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (!event->recorded) return cudaErrorInvalidValue;
  return complete_what_can(event->waits_for) ? cudaSuccess : cudaErrorNotReady;
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

// ---- cuBLASLt (cublasLt.h): descriptors as plain records, the product by the calls above ----
struct EmulatedLtDesc {
  cublasOperation_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
};
struct EmulatedLtLayout {
  cudaDataType type;
  uint64_t rows, cols;
  int64_t ld;
};
struct EmulatedLtPreference {
  uint64_t workspace_bytes = 0;
};

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  *handle = nullptr;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute,
                                        cudaDataType scale) {
  if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F)
    throw std::runtime_error("cuda emulation: cuBLASLt with float32 compute and scale only");
  *desc = new EmulatedLtDesc{};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attribute,
                                              const void* value, size_t bytes) {
  if (bytes != sizeof(cublasOperation_t)) throw std::runtime_error("cuBLASLt: attribute size");
  const auto op = *static_cast<const cublasOperation_t*>(value);
  (attribute == CUBLASLT_MATMUL_DESC_TRANSA ? desc->transa : desc->transb) = op;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  delete desc;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  // Column-major: the leading dimension holds a column.
  if (ld < static_cast<int64_t>(rows) || ld < 1)
    throw std::runtime_error("cuBLASLt layout: leading dimension " + std::to_string(ld) +
                             " below the " + std::to_string(rows) + " rows");
  *layout = new EmulatedLtLayout{type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
  delete layout;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* preference) {
  *preference = new EmulatedLtPreference{};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t preference,
                                                    cublasLtMatmulPreferenceAttributes_t,
                                                    const void* value, size_t bytes) {
  if (bytes != sizeof(uint64_t)) throw std::runtime_error("cuBLASLt: preference size");
  preference->workspace_bytes = *static_cast<const uint64_t*>(value);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t preference) {
  delete preference;
  return CUBLAS_STATUS_SUCCESS;
}

namespace {

// op(X)'s rows and columns from its stored layout.
std::pair<uint64_t, uint64_t> op_shape(const EmulatedLtLayout& x, cublasOperation_t op) {
  return op == CUBLAS_OP_N ? std::pair{x.rows, x.cols} : std::pair{x.cols, x.rows};
}

// The shapes must chain as D (m x n) = op(A) (m x k) · op(B) (k x n).
void require_consistent(const EmulatedLtDesc& desc, const EmulatedLtLayout& a,
                        const EmulatedLtLayout& b, const EmulatedLtLayout& c) {
  const auto [m, k] = op_shape(a, desc.transa);
  const auto [k2, n] = op_shape(b, desc.transb);
  if (k != k2 || c.rows != m || c.cols != n || a.type != b.type || c.type != CUDA_R_32F)
    throw std::runtime_error("cuBLASLt: operand layouts do not chain (" + std::to_string(m) + "x" +
                             std::to_string(k) + " by " + std::to_string(k2) + "x" +
                             std::to_string(n) + " into " + std::to_string(c.rows) + "x" +
                             std::to_string(c.cols) + ")");
}

}  // namespace

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t,
                                              cublasLtMatmulPreference_t, int requested,
                                              cublasLtMatmulHeuristicResult_t* results,
                                              int* returned) {
  require_consistent(*desc, *a, *b, *c);
  *returned = 0;
  if (requested < 1) return CUBLAS_STATUS_SUCCESS;
  results[0] = cublasLtMatmulHeuristicResult_t{};
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t desc, const void* alpha,
                              const void* A, cublasLtMatrixLayout_t a_layout, const void* B,
                              cublasLtMatrixLayout_t b_layout, const void* beta, const void* C,
                              cublasLtMatrixLayout_t c_layout, void* D,
                              cublasLtMatrixLayout_t d_layout, const cublasLtMatmulAlgo_t*,
                              void* workspace, size_t, cudaStream_t) {
  if (D != C || d_layout != c_layout)
    throw std::runtime_error("cuda emulation: cublasLtMatmul in place (D = C) only");
  hg::emu::require_device_pointer("cublasLtMatmul (workspace)", workspace);
  require_consistent(*desc, *a_layout, *b_layout, *c_layout);
  const int m = static_cast<int>(c_layout->rows), n = static_cast<int>(c_layout->cols);
  const int k = static_cast<int>(op_shape(*a_layout, desc->transa).second);
  const int lda = static_cast<int>(a_layout->ld), ldb = static_cast<int>(b_layout->ld),
            ldc = static_cast<int>(c_layout->ld);
  if (a_layout->type == CUDA_R_16BF)
    return cublasGemmEx(nullptr, desc->transa, desc->transb, m, n, k, alpha, A, CUDA_R_16BF, lda, B,
                        CUDA_R_16BF, ldb, beta, D, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT);
  return cublasSgemm(nullptr, desc->transa, desc->transb, m, n, k, static_cast<const float*>(alpha),
                     static_cast<const float*>(A), lda, static_cast<const float*>(B), ldb,
                     static_cast<const float*>(beta), static_cast<float*>(D), ldc);
}

cudaError_t cudaMemset2D(void* p, size_t pitch, int value, size_t width, size_t height) {
  for (size_t row = 0; row < height; ++row) {
    const cudaError_t e = cudaMemset(static_cast<char*>(p) + row * pitch, value, width);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

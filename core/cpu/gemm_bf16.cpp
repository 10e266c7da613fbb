// The bf16 matrix product (core/gemm.h, ARCHITECTURE.md §9.1): each operand is rounded to
// bfloat16 into the calling thread's buffers (an operand its caller rounded, gemm_rounded, is only
// copied), then multiplied by oneDNN's bf16 matmul, which accumulates and stores float32; or,
// without it and for tiny products, by sgemm over the rounded values held as float32.
#include "core/cpu/gemm_bf16.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/bf16.h"
#include "core/gemm.h"
#include "core/parallel_for.h"

#ifdef HG_GEMM_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace hg {
namespace {

// Below this many multiply-adds (M·N·K) per thread a matmul's fixed cost per call (memory
// handles, stream, waking the thread team, packing B) outweighs its rate, and rounded float32
// operands through sgemm are quicker. bench_gemm --shapes, GFLOP/s of the whole bf16 call through
// sgemm / through the matmul, 1 thread:
//   16×144×64 (147k)   Zen 4: 73 / 81    Sapphire Rapids (AMX): 109 / 71
//   64×64×64 (262k)    Zen 4: 82 / 135   Sapphire Rapids (AMX): 145 / 207
// The attention's block products (16×144×64 and 128×64×16, one per thread inside a parallel
// region) write into strided rows of their outputs, which oneDNN 2.6's fast (brgemm) matmul does
// not take: it falls back to its gemm-based one, whose scalar alpha/beta pass ran them at 12-25
// GFLOP/s on Sapphire Rapids and took 12% of a bf16 training step. They stay below this bound.
constexpr int64_t kSmallProduct = int64_t{1} << 19;
// The bound for gemm_bf16_given, whose operands come as bfloat16 copies that many small products
// read: no rounding per call, and the matmul (AMX) is already the faster one from here.
// bench_gemm / t2-style timings on Sapphire Rapids, 1 thread, dense bf16 operands, GFLOP/s matmul
// against sgemm: 32×160×64 NT 420 / 142, 32×48×64 NT 283 / 116, 32×16×64 127 / ~100.
constexpr int64_t kSmallProductGivenB = int64_t{1} << 15;
// Rounding runs on the rank's threads above this many elements; below, a thread team costs more.
constexpr int64_t kParallelElements = int64_t{1} << 16;

// A matrix as the caller stores it: rows × cols, row stride ld; or, where `bits` is given, its
// bfloat16 copy, dense (row stride cols), which the caller made once for several products.
// `rounded`: the float32 elements are bfloat16 values already (gemm_rounded).
struct Stored {
  const float* data;
  int64_t rows, cols, ld;
  const uint16_t* bits;
  bool rounded;
};
Stored stored(bool transposed, int64_t rows_of_op, int64_t cols_of_op, const float* data,
              int64_t ld, const uint16_t* bits, bool rounded) {
  return transposed ? Stored{data, cols_of_op, rows_of_op, ld, bits, rounded}
                    : Stored{data, rows_of_op, cols_of_op, ld, bits, rounded};
}

// `in` converted element by element into dense out[rows × cols] (row stride cols).
template <class Out, class Convert>
void round_matrix(const Stored& in, Out* out, Convert convert) {
  auto row = [&](int64_t r) {
    const float* src = in.data + r * in.ld;
    Out* dst = out + r * in.cols;
    for (int64_t c = 0; c < in.cols; ++c) dst[c] = convert(src[c]);
  };
  if (in.rows * in.cols < kParallelElements) {
    for (int64_t r = 0; r < in.rows; ++r) row(r);
  } else {
    parallel_for(in.rows, row);  // inside a parallel region this runs on the calling thread
  }
}

// A given bfloat16 copy widened into dense float32 (exact), for the sgemm path.
void widen_matrix(const Stored& in, float* out) {
  const int64_t n = in.rows * in.cols;
  if (n < kParallelElements) {
    for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(in.bits[i]);
  } else {
    parallel_for(in.rows, [&](int64_t r) {
      for (int64_t c = r * in.cols; c < (r + 1) * in.cols; ++c) out[c] = bf16_to_float(in.bits[c]);
    });
  }
}

// The calling thread's rounded operands: OpenMP workers (the attention's blocks) call gemm
// concurrently. They grow to the largest product the thread has seen and never shrink.
struct ThreadBuffers {
  std::vector<float> a32, b32;     // the sgemm path
  std::vector<uint16_t> a16, b16;  // the oneDNN path
  std::vector<uint8_t> scratchpad;
  std::vector<float> dense_c;  // a matmul's result before it joins a strided C
};
ThreadBuffers& thread_buffers() {
  thread_local ThreadBuffers buffers;
  return buffers;
}
template <class T>
T* grown(std::vector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}

// An operand as rounded float32 for sgemm: read in place when it is rounded already, else widened
// from its bfloat16 copy or rounded into `buffer` (dense). Returns the data and its row stride.
std::pair<const float*, int64_t> fp32_operand(const Stored& x, std::vector<float>& buffer) {
  if (x.rounded && !x.bits) return {x.data, x.ld};
  float* dense = grown(buffer, x.rows * x.cols);
  if (x.bits)
    widen_matrix(x, dense);
  else
    round_matrix(x, dense, [](float v) { return round_to_bf16(v); });  // a lambda inlines
  return {dense, x.cols};
}

// Rounded operands held as float32, then sgemm: a product of two bfloat16 is exact in float32,
// so this is the bf16 product up to the order of the float32 sums.
void gemm_rounded_fp32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const Stored& a, const Stored& b, float beta, float* C, int64_t ldc) {
  ThreadBuffers& buffers = thread_buffers();
  const auto [a32, lda] = fp32_operand(a, buffers.a32);
  const auto [b32, ldb] = fp32_operand(b, buffers.b32);
  // ld ≥ 1 even when K = 0, as BLAS asks.
  gemm(MatmulPrecision::Fp32, trans_a, trans_b, M, N, K, alpha, a32, std::max<int64_t>(lda, 1), b32,
       std::max<int64_t>(ldb, 1), beta, C, ldc);
}

#ifdef HG_GEMM_DNNL

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// What a matmul primitive bakes in. The rounded copies are dense, so lda and ldb are not part of
// it; alpha and beta are (output scale, sum post-op); so is the thread count, for which oneDNN
// plans its work split at creation (matmul_threads).
struct MatmulKey {
  int64_t M, N, K, ldc;
  bool trans_a, trans_b;
  uint32_t alpha_bits, beta_bits;
  int threads;
  auto operator<=>(const MatmulKey&) const = default;
};

// A primitive and its memory objects, whose data handles are set at each call.
struct Matmul {
  dnnl::matmul primitive;
  dnnl::memory src, weights, dst, scratchpad;
  int64_t scratchpad_bytes;
  // execute()'s arguments, built once: the attention's block products are a few microseconds
  // each, and a map built per call was a measurable part of that.
  std::unordered_map<int, dnnl::memory> args;
};

Matmul make_matmul(const MatmulKey& k) {
  using dims = dnnl::memory::dims;
  using dt = dnnl::memory::data_type;
  // op(A) [M,K] over the dense copy of A as stored: [M,K], or [K,M] read with swapped strides.
  const dnnl::memory::desc src({k.M, k.K}, dt::bf16, k.trans_a ? dims{1, k.M} : dims{k.K, 1});
  const dnnl::memory::desc weights({k.K, k.N}, dt::bf16, k.trans_b ? dims{1, k.K} : dims{k.N, 1});
  const dnnl::memory::desc dst({k.M, k.N}, dt::f32, dims{k.ldc, 1});
  dnnl::primitive_attr attr;
  // The library's scratchpad is shared by all primitives and ties each to the thread that made
  // it; ours is per calling thread.
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const float alpha = std::bit_cast<float>(k.alpha_bits), beta = std::bit_cast<float>(k.beta_bits);
  if (alpha != 1.0f) attr.set_output_scales(0, {alpha});  // applied before the sum post-op
  if (beta != 0.0f) {
    dnnl::post_ops ops;
    ops.append_sum(beta);  // dst = alpha·(src·weights) + beta·dst, in float32
    attr.set_post_ops(ops);
  }
  const dnnl::engine& engine = cpu_engine();
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, weights, dst), attr, engine);
  const dnnl::memory::desc scratchpad = pd.scratchpad_desc();
  Matmul m{dnnl::matmul(pd),
           dnnl::memory(src, engine, nullptr),
           dnnl::memory(weights, engine, nullptr),
           dnnl::memory(dst, engine, nullptr),
           dnnl::memory(scratchpad, engine, nullptr),
           static_cast<int64_t>(scratchpad.get_size()),
           {}};
  m.args = {{DNNL_ARG_SRC, m.src}, {DNNL_ARG_WEIGHTS, m.weights}, {DNNL_ARG_DST, m.dst}};
  if (m.scratchpad_bytes > 0) m.args.emplace(DNNL_ARG_SCRATCHPAD, m.scratchpad);
  return m;
}

#endif  // HG_GEMM_DNNL

// bf16_matmul_supported, asked once.
bool native_bf16() {
  static const bool supported = bf16_matmul_supported();
  return supported;
}

}  // namespace

int matmul_threads() { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

bool bf16_matmul_supported(std::string* reason) {
#ifdef HG_GEMM_DNNL
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto needed = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
  if ((isa & needed) == needed) return true;
  if (reason) {
    char text[160];
    std::snprintf(text, sizeof text,
                  "this CPU has no AVX512-BF16 (oneDNN's best instruction set here: dnnl_cpu_isa "
                  "0x%x), so bf16 matrix products would be slower than fp32",
                  isa);
    *reason = text;
  }
#else
  if (reason)
    *reason =
        "hourglass was built with OpenBLAS (HG_GEMM=openblas), which has no bf16 matrix "
        "product; rebuild with HG_GEMM=dnnl on a CPU with AVX512-BF16";
#endif
  return false;
}

#ifdef HG_GEMM_DNNL
// The primitive on dense A16, B16 into C (row stride ldc), or false without native bf16.
// oneDNN's bf16 matmul is deterministic for a fixed primitive and thread count (each output
// element's K sum is split and ordered the same way every call).
bool run_matmul(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const uint16_t* A, const uint16_t* B, float beta, float* C, int64_t ldc) {
  if (!native_bf16()) return false;
  // Per thread, so no lock: one entry per distinct product the thread runs (a model has tens).
  thread_local std::map<MatmulKey, Matmul> cache;
  thread_local dnnl::stream stream(cpu_engine());
  const MatmulKey key{M,
                      N,
                      K,
                      ldc,
                      trans_a,
                      trans_b,
                      std::bit_cast<uint32_t>(alpha),
                      std::bit_cast<uint32_t>(beta),
                      matmul_threads()};
  auto entry = cache.find(key);
  if (entry == cache.end()) entry = cache.emplace(key, make_matmul(key)).first;
  Matmul& matmul = entry->second;
  // oneDNN reads but never writes src and weights; its handles are not const.
  matmul.src.set_data_handle(const_cast<uint16_t*>(A));
  matmul.weights.set_data_handle(const_cast<uint16_t*>(B));
  matmul.dst.set_data_handle(C);
  if (matmul.scratchpad_bytes > 0)  // the args hold the same memory objects (shared handles)
    matmul.scratchpad.set_data_handle(grown(thread_buffers().scratchpad, matmul.scratchpad_bytes));
  matmul.primitive.execute(stream, matmul.args);
  stream.wait();
  return true;
}

// A dense C goes to the primitive as it is. A strided one (ldc > N) would send oneDNN 2.6 to its
// slow gemm-based matmul (above), so the product lands in a dense buffer first and then joins C:
// C = T + beta·C, the sum post-op's formula.
bool gemm_bf16_rounded(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const uint16_t* A, const uint16_t* B, float beta, float* C, int64_t ldc) {
  if (ldc == N) return run_matmul(trans_a, trans_b, M, N, K, alpha, A, B, beta, C, ldc);
  float* dense = grown(thread_buffers().dense_c, M * N);
  if (!run_matmul(trans_a, trans_b, M, N, K, alpha, A, B, 0.0f, dense, N)) return false;
  auto join_row = [&](int64_t i) {
    const float* t = dense + i * N;
    float* c = C + i * ldc;
    if (beta == 0.0f) {
      for (int64_t j = 0; j < N; ++j) c[j] = t[j];
    } else {
      for (int64_t j = 0; j < N; ++j) c[j] = t[j] + beta * c[j];
    }
  };
  parallel_for(M, join_row);  // inside a parallel region this runs on the calling thread
  return true;
}
#else
bool gemm_bf16_rounded(bool, bool, int64_t, int64_t, int64_t, float, const uint16_t*,
                       const uint16_t*, float, float*, int64_t) {
  return false;
}
#endif

void bf16_copy(uint16_t* out, const float* in, int64_t rows, int64_t cols, int64_t ld) {
  round_matrix(Stored{in, rows, cols, ld, nullptr, false}, out,
               [](float x) { return bf16_bits(x); });
}

std::unique_ptr<uint16_t[]> bf16_copy_of(const float* in, int64_t rows, int64_t cols, int64_t ld) {
  if (rows * cols == 0) return nullptr;
  // Uninitialised on purpose: bf16_copy writes every element.
  std::unique_ptr<uint16_t[]> copy(new uint16_t[static_cast<size_t>(rows * cols)]);
  bf16_copy(copy.get(), in, rows, cols, ld);
  return copy;
}

namespace {

// An operand as dense bfloat16 for the matmul: its copy where given, else rounded into `buffer`
// (the top half of each float where it is rounded already, a cheaper loop).
const uint16_t* bf16_operand(const Stored& x, std::vector<uint16_t>& buffer) {
  if (x.bits) return x.bits;
  uint16_t* dense = grown(buffer, x.rows * x.cols);
  if (x.rounded)
    round_matrix(x, dense, [](float v) { return uint16_t(std::bit_cast<uint32_t>(v) >> 16); });
  else
    round_matrix(x, dense, [](float v) { return bf16_bits(v); });
  return dense;
}

// The weights' copies while a WeightCopiesScope lives (core/gemm.h). Process-wide, like the
// precision: the products that read weights may run on any thread. A copy is made under the lock
// at its first use and then only read; std::map nodes never move, so a copy stays where it is
// until the scope ends.
struct WeightCopies {
  struct Key {
    const float* data;
    int64_t rows, cols, ld;
    bool transposed;
    auto operator<=>(const Key&) const = default;
  };
  std::mutex mutex;
  // Set and cleared under mutex; read without it first, so that products outside a scope never
  // take the lock.
  std::atomic<bool> active{false};
  std::vector<std::pair<const float*, int64_t>> ranges;  // the weights, set by the scope
  std::map<Key, std::vector<uint16_t>> copies;
};
WeightCopies& weight_copies() {
  static WeightCopies copies;
  return copies;
}

// x dense as stored [rows, cols] (transposed: [cols, rows]) as bfloat16.
void make_weight_copy(const Stored& x, bool transposed, std::vector<uint16_t>& copy) {
  copy.resize(static_cast<size_t>(x.rows * x.cols));
  if (!transposed) {
    round_matrix(x, copy.data(), [](float v) { return bf16_bits(v); });
    return;
  }
  // Column c of x is row c of the copy; blocks of 64 source rows keep the writes in cache lines.
  constexpr int64_t kBlock = 64;
  parallel_for((x.rows + kBlock - 1) / kBlock, [&](int64_t block) {
    const int64_t r0 = block * kBlock, r1 = std::min(x.rows, r0 + kBlock);
    for (int64_t c = 0; c < x.cols; ++c)
      for (int64_t r = r0; r < r1; ++r) copy[c * x.rows + r] = bf16_bits(x.data[r * x.ld + c]);
  });
}

// The copy of x (transposed: of xᵀ) when a scope lives and x lies inside one of its weights, else
// null. x as gemm_bf16 sees it: an operand given as bits or as rounded floats is its caller's.
const uint16_t* weight_copy(const Stored& x, bool transposed) {
  WeightCopies& w = weight_copies();
  if (x.bits || x.rounded || x.rows == 0 || x.cols == 0 || !w.active) return nullptr;
  const std::lock_guard<std::mutex> lock(w.mutex);
  if (!w.active) return nullptr;
  const float* last = x.data + (x.rows - 1) * x.ld + x.cols;  // one past x's last element
  const bool inside = std::any_of(w.ranges.begin(), w.ranges.end(), [&](const auto& range) {
    return x.data >= range.first && last <= range.first + range.second;
  });
  if (!inside) return nullptr;
  auto [entry, made] = w.copies.try_emplace({x.data, x.rows, x.cols, x.ld, transposed});
  if (made) make_weight_copy(x, transposed, entry->second);
  return entry->second.data();
}

// An operand as dense bfloat16 for the matmul, and whether the matmul reads it transposed: a
// weight's copy for the step (transposed already where the product reads it so), else
// bf16_operand.
std::pair<const uint16_t*, bool> matmul_operand(const Stored& x, bool transposed,
                                                std::vector<uint16_t>& buffer) {
  if (const uint16_t* copy = weight_copy(x, transposed)) return {copy, false};
  return {bf16_operand(x, buffer), transposed};
}

}  // namespace

WeightCopiesScope::WeightCopiesScope(const std::vector<std::pair<const float*, int64_t>>& weights) {
  WeightCopies& w = weight_copies();
  const std::lock_guard<std::mutex> lock(w.mutex);
  owner_ = !w.active;
  if (!owner_) return;
  w.active = true;
  w.ranges = weights;
}

WeightCopiesScope::~WeightCopiesScope() {
  if (!owner_) return;
  WeightCopies& w = weight_copies();
  const std::lock_guard<std::mutex> lock(w.mutex);
  w.active = false;
  w.ranges.clear();
  w.copies.clear();
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const uint16_t* A16, bool a_rounded, const float* B,
               int64_t ldb, const uint16_t* B16, bool b_rounded, float beta, float* C, int64_t ldc,
               bool small_b) {
  const Stored a = stored(trans_a, M, K, A, lda, A16, a_rounded);
  const Stored b = stored(trans_b, K, N, B, ldb, B16, b_rounded);
  const int64_t small = small_b ? kSmallProductGivenB : kSmallProduct;
  if (K > 0 && M * N * K >= small * matmul_threads() && native_bf16()) {
    ThreadBuffers& buffers = thread_buffers();
    const auto [a16, a_transposed] = matmul_operand(a, trans_a, buffers.a16);
    const auto [b16, b_transposed] = matmul_operand(b, trans_b, buffers.b16);
    if (gemm_bf16_rounded(a_transposed, b_transposed, M, N, K, alpha, a16, b16, beta, C, ldc))
      return;
  }
  gemm_rounded_fp32(trans_a, trans_b, M, N, K, alpha, a, b, beta, C, ldc);
}

}  // namespace hg

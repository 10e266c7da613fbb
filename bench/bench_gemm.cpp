// Matrix-product rates (issue 14): fp32 gemm against bf16 gemm (core/gemm.h) on the model's
// shapes, at each thread count asked for.
//
//   bench_gemm [--reps N] [--threads 1,2] [--trans NN|NT|TN|TT] [--shapes 16x144x64,...]
//
// Prints, per thread count and shape M×N×K (row-major, beta 0; op(A), op(B) transposed as --trans
// says: NT is a layer's dX = dY·Wᵀ, TN its dW = Xᵀ·dY), GFLOP/s of
//   fp32         gemm(Fp32): sgemm
//   bf16         gemm(Bf16): both operands rounded to bfloat16 inside the call, then the matmul
//   bf16 matmul  the same matmul on operands rounded beforehand (gemm_bf16_rounded); the gap to
//                "bf16" is what the rounding costs ("rounding": its share of a bf16 call)
// counting 2·M·N·K per product, best of N calls after one warm-up (other processes share the
// cores: the load average before and after is printed). The last shape, one attention block
// (147k multiply-adds), lies near where gemm's bf16 path changes from sgemm over rounded values to
// the matmul (kSmallProduct in core/cpu/gemm_bf16.cpp; --shapes to look closer).
// Numbers, never pass/fail.
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "bench/common.h"
#include "core/bf16.h"
#include "core/cpu/gemm_bf16.h"  // the matmul without the rounding, to time the two apart
#include "core/gemm.h"
#include "core/parallel_for.h"

namespace {

using hg::bench::Clock;
using hg::bench::seconds_since;

struct Shape {
  int64_t M, N, K;
};

// The model's products at micro-batch 8 (6144 rows: d 256, ffn 1024), a square one, and the
// attention's per-block product.
const char* kShapes = "6144x256x256,6144x1024x256,6144x256x1024,1024x1024x1024,16x144x64";

// "MxNxK,MxNxK,..."
std::vector<Shape> parse_shapes(const std::string& text) {
  std::vector<Shape> shapes;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    Shape s{};
    char x1 = 0, x2 = 0;
    std::stringstream one(item);
    one >> s.M >> x1 >> s.N >> x2 >> s.K;
    hg::require(one && one.peek() == EOF && x1 == 'x' && x2 == 'x' && s.M > 0 && s.N > 0 && s.K > 0,
                "--shapes: '" + item + "' is not MxNxK");
    shapes.push_back(s);
  }
  return shapes;
}

// Best wall seconds of `reps` calls of `product` after one (primitive creation, first touch).
template <class Product>
double best_seconds(int reps, Product&& product) {
  product();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto start = Clock::now();
    product();
    best = std::min(best, seconds_since(start));
  }
  return best;
}

double load_average() {
  double load[1] = {0};
  return getloadavg(load, 1) == 1 ? load[0] : -1;
}

void run_shape(const Shape& s, bool ta, bool tb, int reps) {
  const auto [M, N, K] = s;
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;  // dense as stored
  std::vector<float> a(M * K), b(K * N), c(M * N);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i % 17) * 0.1f - 0.8f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i % 13) * 0.1f - 0.6f;
  std::vector<uint16_t> a16(a.size()), b16(b.size());
  std::transform(a.begin(), a.end(), a16.begin(), hg::bf16_bits);
  std::transform(b.begin(), b.end(), b16.begin(), hg::bf16_bits);

  auto gemm_at = [&](hg::MatmulPrecision precision) {
    return best_seconds(reps, [&] {
      hg::gemm(precision, ta, tb, M, N, K, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), N);
    });
  };
  const double fp32 = gemm_at(hg::MatmulPrecision::Fp32);
  const double bf16 = gemm_at(hg::MatmulPrecision::Bf16);
  bool native = true;
  const double matmul = best_seconds(reps, [&] {
    native =
        hg::gemm_bf16_rounded(ta, tb, M, N, K, 1.0f, a16.data(), b16.data(), 0.0f, c.data(), N);
  });
  const double flops = 2.0 * M * N * K;
  char shape[48];
  std::snprintf(shape, sizeof shape, "%ldx%ldx%ld", static_cast<long>(M), static_cast<long>(N),
                static_cast<long>(K));
  std::printf("%7d  %-16s %8.1f %8.1f", hg::num_threads(), shape, flops / fp32 * 1e-9,
              flops / bf16 * 1e-9);
  if (native)
    std::printf(" %11.1f %9.2f %8.0f%%\n", flops / matmul * 1e-9, fp32 / bf16,
                100.0 * (1.0 - matmul / bf16));
  else
    std::printf(" %11s %9.2f %9s\n", "n/a", fp32 / bf16, "n/a");
}

}  // namespace

int main(int argc, char** argv) {
  return hg::bench::run_main("bench_gemm", [&] {
    hg::bench::Flags flags(
        argc, argv,
        "bench_gemm [--reps N] [--threads 1,2] [--trans NN|NT|TN|TT] [--shapes MxNxK,...]");
    const int reps = flags.integer("--reps", 20);
    std::stringstream thread_list(flags.text("--threads", "1,2"));
    const std::string trans = flags.text("--trans", "NN");
    const std::vector<Shape> shapes = parse_shapes(flags.text("--shapes", kShapes));
    flags.done();
    hg::require(trans.size() == 2 && trans.find_first_not_of("NT") == std::string::npos,
                "--trans " + trans + ": expected NN, NT, TN or TT");
    std::string reason;
    const bool native = hg::bf16_matmul_supported(&reason);
    std::printf("bench_gemm: gemm library %s, bf16 %s, %s, best of %d, load average %.2f\n",
                hg::gemm_library(), native ? "native" : ("not native: " + reason).c_str(),
                trans.c_str(), reps, load_average());
    std::printf("%7s  %-16s %8s %8s %11s %9s %9s   (GFLOP/s)\n", "threads", "MxNxK", "fp32", "bf16",
                "bf16 matmul", "bf16/fp32", "rounding");
    for (std::string item; std::getline(thread_list, item, ',');) {
      hg::set_num_threads(std::stoi(item));
      for (const Shape& s : shapes) run_shape(s, trans[0] == 'T', trans[1] == 'T', reps);
    }
    std::printf("load average after: %.2f\n", load_average());
    return 0;
  });
}

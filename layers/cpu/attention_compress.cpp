// Chunk softmax and chunk compression of long-short attention; see attention_compress.h.
#include "layers/cpu/attention_compress.h"

#include <algorithm>
#include <cmath>

#include "core/parallel_for.h"

namespace hg {

void chunk_softmax_forward(float* probs, const float* logits, int64_t B, int64_t n, int l,
                           int cols) {
  const int64_t chunks = B * (n / l);  // chunks never straddle sequences: n % l == 0
  parallel_for(chunks, [&](int64_t bc) {
    const float* z = logits + bc * l * cols;  // [l, cols]
    float* p = probs + bc * l * cols;
    for (int col = 0; col < cols; ++col) {
      float m = z[col];
      for (int i = 1; i < l; ++i) m = std::max(m, z[i * cols + col]);
      float sum = 0.0f;
      for (int i = 0; i < l; ++i) {
        const float v = std::exp(z[i * cols + col] - m);
        p[i * cols + col] = v;
        sum += v;
      }
      const float inv = 1.0f / sum;
      for (int i = 0; i < l; ++i) p[i * cols + col] *= inv;
    }
  });
}

void chunk_softmax_backward(float* dlogits, const float* dprobs, const float* probs, int64_t B,
                            int64_t n, int l, int cols) {
  const int64_t chunks = B * (n / l);
  parallel_for(chunks, [&](int64_t bc) {
    const float* p = probs + bc * l * cols;
    const float* dp = dprobs + bc * l * cols;
    float* dz = dlogits + bc * l * cols;
    for (int col = 0; col < cols; ++col) {
      float pd = 0.0f;
      for (int i = 0; i < l; ++i) pd += p[i * cols + col] * dp[i * cols + col];
      for (int i = 0; i < l; ++i)
        dz[i * cols + col] = p[i * cols + col] * (dp[i * cols + col] - pd);
    }
  });
}

void chunk_compress_forward(float* comp, const float* x, const float* probs, int64_t B, int64_t n,
                            int l, int H, int r, int e) {
  const int64_t width = static_cast<int64_t>(H) * e, pcols = static_cast<int64_t>(H) * r;
  const int64_t chunks = B * (n / l);
  parallel_for(chunks, [&](int64_t bc) {
    const float* xc = x + bc * l * width;      // [l, H·e]
    const float* pc = probs + bc * l * pcols;  // [l, H·r]
    float* out = comp + bc * r * width;        // [r, H·e]
    for (int rho = 0; rho < r; ++rho)
      for (int h = 0; h < H; ++h) {
        float* o = out + rho * width + h * e;
        std::fill(o, o + e, 0.0f);
        for (int i = 0; i < l; ++i) {
          const float p = pc[i * pcols + h * r + rho];
          const float* xi = xc + i * width + h * e;
          for (int k = 0; k < e; ++k) o[k] += p * xi[k];
        }
      }
  });
}

void chunk_compress_backward(float* dx, float* dprobs, const float* dcomp, const float* x,
                             const float* probs, int64_t B, int64_t n, int l, int H, int r, int e) {
  const int64_t width = static_cast<int64_t>(H) * e, pcols = static_cast<int64_t>(H) * r;
  const int64_t chunks = B * (n / l);
  parallel_for(chunks, [&](int64_t bc) {
    const float* xc = x + bc * l * width;
    const float* pc = probs + bc * l * pcols;
    const float* dc = dcomp + bc * r * width;  // [r, H·e]
    float* dxc = dx + bc * l * width;
    float* dpc = dprobs + bc * l * pcols;
    for (int i = 0; i < l; ++i)
      for (int h = 0; h < H; ++h) {
        const float* xi = xc + i * width + h * e;
        float* dxi = dxc + i * width + h * e;
        for (int rho = 0; rho < r; ++rho) {
          const float* g = dc + rho * width + h * e;
          const float p = pc[i * pcols + h * r + rho];
          float dot = 0.0f;
          for (int k = 0; k < e; ++k) {
            dxi[k] += p * g[k];
            dot += g[k] * xi[k];
          }
          dpc[i * pcols + h * r + rho] += dot;
        }
      }
  });
}

}  // namespace hg

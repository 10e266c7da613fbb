// One head row of RoPE (rope.cpp), shared with the code that fuses it into a pass of its own
// (the CPU attention's bf16 window copies, attention.cpp) so both compute the same bits.
#pragma once

namespace hg {

// The pairs (z[2i], z[2i+1]) of one head row rotated by +angle (kSign = +1) or -angle (-1), cs
// and sn the RoPE table's row of the position: write(j, y_j) for j < 2·half. Every input pair is
// read before its outputs are handed over (in place is fine).
template <int kSign, class Write>
inline void rope_row(const float* z, const float* cs, const float* sn, int half, Write write) {
  for (int i = 0; i < half; ++i) {
    const float x0 = z[2 * i], x1 = z[2 * i + 1];
    const float c = cs[i], s = kSign * sn[i];
    write(2 * i, x0 * c - x1 * s);
    write(2 * i + 1, x0 * s + x1 * c);
  }
}

}  // namespace hg

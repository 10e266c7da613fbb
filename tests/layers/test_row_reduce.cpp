#include <gtest/gtest.h>

#include <vector>

#include "core/parallel_for.h"
#include "layers/dconv.h"
#include "layers/layernorm.h"
#include "layers/linear.h"
#include "layers/cpu/row_reduce.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::random_vector;

TEST(RowReduce, ColumnSumsMatchDoubleReferenceForAwkwardSizes) {
  for (int64_t rows : {1, 31, 32, 33, 1000, 5000}) {
    const int64_t cols = 300, ld = 307;  // > one 256-column block, padded rows
    auto m = random_vector(rows * ld, uint64_t(rows));
    std::vector<float> sums(cols, 1.0f);
    add_column_sums(sums.data(), m.data(), rows, cols, ld);
    for (int64_t c = 0; c < cols; ++c) {
      double s = 1.0;
      for (int64_t r = 0; r < rows; ++r) s += m[r * ld + c];
      ASSERT_NEAR(sums[c], s, 1e-6 * (rows + 10)) << rows << "," << c;
    }
  }
}

// Parameter gradients reduce over rows: they must be bit-identical whatever the thread count.
TEST(RowReduce, ParameterGradientsDoNotDependOnThreadCount) {
  const int64_t rows = 3000;
  const int d = 96;
  auto x = random_vector(rows * d, 1), dy = random_vector(rows * d, 2), gain = random_vector(d, 3);
  std::vector<float> bias(d, 0.0f), y(rows * d), mean(rows * 2), rstd(rows * 2);
  auto taps = random_vector(3 * d, 4), W = random_vector(d * d, 5);
  auto run = [&](int threads) {
    const int saved = num_threads();
    set_num_threads(threads);
    std::vector<float> out;
    std::vector<float> dx(rows * d), dg(d, 0.0f), db(d, 0.0f), dt(3 * d, 0.0f), dW(d * d, 0.0f),
        dlb(d, 0.0f);
    layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), gain.data(), bias.data(), rows,
                      2, d / 2);
    layernorm_backward(dx.data(), dg.data(), db.data(), dy.data(), x.data(), gain.data(),
                       mean.data(), rstd.data(), rows, 2, d / 2);
    out.insert(out.end(), dx.begin(), dx.end());
    dconv_backward(dx.data(), dt.data(), dy.data(), x.data(), taps.data(), 6, rows / 6, d, d);
    linear_backward(nullptr, dW.data(), dlb.data(), dy.data(), x.data(), W.data(), rows, d, d, d);
    for (auto* v : {&dg, &db, &dt, &dlb}) out.insert(out.end(), v->begin(), v->end());
    set_num_threads(saved);
    return out;
  };
  auto one = run(1);
  auto two = run(2);
  auto three = run(3);
  EXPECT_EQ(one, two);
  EXPECT_EQ(one, three);
}

}  // namespace
}  // namespace hg

// The gradient norm's sums (Backend::sum_squares_each): every span's sum of squares, each the
// same bits as the span summed alone, whatever the backend does to run them side by side.
#include <gtest/gtest.h>

#include <vector>

#include "tests/support/backends.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::OnEveryBackend;
using testing::random_vector;

class Sums : public OnEveryBackend {};
HG_TEST_ON_EVERY_BACKEND(Sums);

// Uneven spans (an empty one, a tail of a buffer, more spans than threads) over one buffer.
TEST_P(Sums, SumSquaresEachIsEachSpanAlone) {
  const auto host = random_vector(100000, 31, 3.0f);
  const Tensor x = on_device(host);
  const int64_t bounds[][2] = {{0, 70000},      {70000, 70000}, {70000, 70001}, {70001, 99000},
                               {99000, 100000}, {5, 17},        {0, 100000}};
  std::vector<Backend::Span> spans;
  for (const auto& b : bounds) spans.push_back({x.data() + b[0], b[1] - b[0]});
  std::vector<double> sums(spans.size(), -1.0);
  backend().sum_squares_each(spans, sums.data());
  for (size_t i = 0; i < spans.size(); ++i) {
    EXPECT_EQ(sums[i], backend().sum_squares(spans[i].data, spans[i].n)) << "span " << i;
    double want = 0;
    for (int64_t j = bounds[i][0]; j < bounds[i][1]; ++j) want += double(host[j]) * host[j];
    EXPECT_NEAR(sums[i], want, 1e-9 * want + 1e-12) << "span " << i;
  }
  EXPECT_EQ(sums[1], 0.0);
}

}  // namespace
}  // namespace hg

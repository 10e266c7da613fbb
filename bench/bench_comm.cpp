// Point-to-point and all-reduce costs through hg::comm (the trainer's waits, with their back-off),
// for the planner's cluster description (docs/scaling.md):
//   mpirun -np 2 build/bench/bench_comm [--config FILE.ini] [--section.key value ...]
// prints one-way message time and all-reduce time per size, then [cluster] lines:
//   intra_bandwidth, intra_latency   one-way messages (the largest size; the smallest size),
//   allreduce_bandwidth              1 MB all-reduces back to back,
//   message_overhead                 a pipeline activation's delivery (receiver waiting, sender
//                                    computing) beyond intra_latency + bytes / intra_bandwidth,
//   allreduce_latency                the trainer's gradient all-reduce: one call per parameter
//                                    tensor of the configured model (the defaults without flags),
//                                    back to back, the last rank 1 ms late (as after a backward);
//                                    what each call costs beyond its bytes, on average.
// Waits back off to sleeps of up to 200 us, so a call whose partner is late costs about a sleep:
// back-to-back calls are sometimes in lock-step (~1 us each), sometimes not (~300 us each), and
// the gradient all-reduce of a real model lands in between.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/common.h"
#include "core/error.h"
#include "model/stage_model.h"
#include "parallel/comm.h"
#include "trainer/config.h"

namespace {

using hg::bench::median;

// Median over `repeats` of (calls of `body` back to back after a barrier) / calls.
template <class Body>
double per_call(int repeats, int calls, Body&& body) {
  std::vector<double> runs;
  for (int r = 0; r < repeats; ++r) {
    hg::comm::barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    for (int k = 0; k < calls; ++k) body();
    runs.push_back((MPI_Wtime() - t0) / calls);
  }
  return median(runs);
}

// The measurements on MPI_COMM_WORLD; rank 0 prints them.
void run(int rank, int size, const hg::Config& config) {
  // One-way messages (half a ping-pong) and all-reduces after a barrier, per size.
  std::vector<int64_t> counts;
  for (int64_t n = 1; n <= (int64_t{1} << 22); n *= 8) counts.push_back(n);
  if (rank == 0)
    std::printf("%12s %14s %10s %16s\n", "bytes", "one-way (us)", "GB/s", "allreduce (us)");
  double small_p2p = 0, big_p2p = 0;
  int64_t big_bytes = 0;
  for (int64_t n : counts) {
    std::vector<float> buf(n, 1.0f);
    const double rtt = per_call(30, 1, [&] {
      if (rank == 0) {
        auto s = hg::comm::isend(buf.data(), n, 1, 7, MPI_COMM_WORLD);
        hg::comm::wait(s);
        auto q = hg::comm::irecv(buf.data(), n, 1, 8, MPI_COMM_WORLD);
        hg::comm::wait(q);
      } else if (rank == 1) {
        auto q = hg::comm::irecv(buf.data(), n, 0, 7, MPI_COMM_WORLD);
        hg::comm::wait(q);
        auto s = hg::comm::isend(buf.data(), n, 0, 8, MPI_COMM_WORLD);
        hg::comm::wait(s);
      }
    });
    const double reduce =
        per_call(30, 1, [&] { hg::comm::allreduce_sum(buf.data(), n, MPI_COMM_WORLD); });
    const double one_way = rtt / 2;
    const int64_t bytes = n * 4;
    if (n == counts.front()) small_p2p = one_way;
    big_p2p = one_way;
    big_bytes = bytes;
    if (rank == 0)
      std::printf("%12ld %14.1f %10.2f %16.1f\n", long(bytes), one_way * 1e6, bytes / one_way / 1e9,
                  reduce * 1e6);
  }

  // All-reduces back to back, as the trainer's gradient all-reduce makes them.
  const double ring = 2.0 * (size - 1) / size;
  std::vector<float> one(1, 1.0f), mega(1 << 18, 1.0f);
  const double tiny_calls =
      per_call(9, 50, [&] { hg::comm::allreduce_sum(one.data(), 1, MPI_COMM_WORLD); });
  const double mega_calls = per_call(9, 10, [&] {
    hg::comm::allreduce_sum(mega.data(), static_cast<int64_t>(mega.size()), MPI_COMM_WORLD);
  });
  const double allreduce_bandwidth =
      ring * mega.size() * 4 / std::max(mega_calls - tiny_calls, 1e-9);

  hg::StageModel model(config.model, config.train.seq_len);
  int64_t elements = 0;
  int tensors = 0;
  for (auto& [name, p] : model.params().all()) {
    elements += p.grad.numel();
    ++tensors;
  }
  // The mean, not the median: which regime (lock-step or sleeping) a step falls into varies,
  // and a step pays the average. Ranks never finish their backward together: the last rank
  // starts 1 ms after the others, whose first wait therefore goes to sleep; the time counts
  // from the last rank's start.
  std::vector<double> runs;
  for (int r = 0; r < 40; ++r) {
    hg::comm::barrier(MPI_COMM_WORLD);
    if (rank == size - 1) {
      const double until = MPI_Wtime() + 1e-3;
      while (MPI_Wtime() < until) {
      }
    }
    const double t0 = MPI_Wtime();
    for (auto& [name, p] : model.params().all())
      hg::comm::allreduce_sum(p.grad.data(), p.grad.numel(), MPI_COMM_WORLD);
    double took = MPI_Wtime() - t0;
    MPI_Bcast(&took, 1, MPI_DOUBLE, size - 1, MPI_COMM_WORLD);
    runs.push_back(took);
  }
  double gradients = 0;
  for (double t : runs) gradients += t / runs.size();
  std::sort(runs.begin(), runs.end());
  const double allreduce_latency =
      std::max(0.0, (gradients - ring * elements * 4 / allreduce_bandwidth) / tensors);

  // A pipeline message as the trainer sends one: the receiver has been waiting in hg::comm::wait
  // (0.2 or 2 ms: it polls, then naps), the sender computes on after its isend. Its cost from the
  // isend to the receive's completion, on the node's common clock (CLOCK_MONOTONIC), against
  // what latency + bytes / bandwidth of the ping-pong above predicts: the difference is the
  // planner's cluster.message_overhead.
  const int64_t message = int64_t{config.train.micro_batch} * config.train.seq_len *
                          config.model.d_model;  // one activation, floats
  const double link_bandwidth = big_bytes / std::max(big_p2p - small_p2p, 1e-9);
  const double modelled = small_p2p + message * 4 / link_bandwidth;
  std::vector<float> activation(message, 1.0f);
  auto now = [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  auto spin = [&](double seconds) {
    for (const double until = now() + seconds; now() < until;) {
    }
  };
  double delivered = 0;
  const int deliveries = 40;
  for (int r = 0; r < deliveries; ++r) {
    hg::comm::barrier(MPI_COMM_WORLD);
    double sent = 0, received = 0;
    if (rank == 0) {
      spin(r % 2 ? 2e-3 : 2e-4);  // the receiver waits this long
      sent = now();
      auto s = hg::comm::isend(activation.data(), message, 1, 9, MPI_COMM_WORLD);
      spin(2e-3);  // computing the next micro-batch
      hg::comm::wait(s);
    } else if (rank == 1) {
      auto q = hg::comm::irecv(activation.data(), message, 0, 9, MPI_COMM_WORLD);
      hg::comm::wait(q);
      received = now();
    }
    MPI_Bcast(&sent, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    MPI_Bcast(&received, 1, MPI_DOUBLE, 1, MPI_COMM_WORLD);
    delivered += (received - sent) / deliveries;
  }

  if (rank == 0) {
    std::printf(
        "\npipeline message of %.1f KB (receiver waiting, sender computing): %.1f us from isend to "
        "delivery, %.1f us modelled by latency + bytes / bandwidth\n",
        message * 4 / 1e3, delivered * 1e6, modelled * 1e6);
    std::printf("\nall-reduce back to back: 4 bytes %.1f us per call, 1 MB %.1f us per call\n",
                tiny_calls * 1e6, mega_calls * 1e6);
    std::printf(
        "gradient all-reduce of the model (%d tensors, %.2f MB): mean %.2f ms (fastest "
        "%.2f, median %.2f, slowest %.2f)\n",
        tensors, elements * 4 / 1e6, gradients * 1e3, runs.front() * 1e3,
        runs[runs.size() / 2] * 1e3, runs.back() * 1e3);
    std::printf("\n# for the planner (%d ranks on this node):\n[cluster]\n", size);
    std::printf(
        "intra_bandwidth = %.3g\nintra_latency = %.3g\nallreduce_bandwidth = %.3g\n"
        "allreduce_latency = %.3g\nmessage_overhead = %.3g\n",
        link_bandwidth, small_p2p, allreduce_bandwidth, allreduce_latency,
        std::max(0.0, delivered - modelled));
  }
}

}  // namespace

int main(int argc, char** argv) {
  return hg::bench::run_mpi_main(argc, argv, "bench_comm", [&](int rank, int size) {
    // The trainer's options: the model whose gradient all-reduce is measured.
    const hg::Config config = hg::parse_config(std::vector<std::string>(argv + 1, argv + argc));
    hg::require(size >= 2, "run under mpirun -np 2 (or more)");
    run(rank, size, config);
  });
}

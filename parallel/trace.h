// A Chrome / Perfetto trace of every rank (log.trace): complete events ("ph":"X") with pid = rank,
// tid 0, times in µs from a common t0. Open the file in https://ui.perfetto.dev or
// chrome://tracing.
//
// t0 is each rank's clock read right after an MPI_Barrier, so ranks agree to within the barrier's
// exit skew (a few µs on one node, more across nodes): good enough to see bubbles.
// Recording is a push_back (no MPI, no I/O); write() gathers everything to rank 0 once.
#pragma once
#include <mpi.h>

#include <string>
#include <vector>

namespace hg {

enum class TraceCategory { Forward, Backward, Send, Recv, Idle, Other };
const char* trace_category_name(TraceCategory category);  // "forward", ..., "other"

struct TraceEvent {
  std::string name;  // e.g. "F3", "recv activation"
  TraceCategory category;
  double start_us;  // since t0
  double duration_us;
  int micro_batch;  // -1 if none; shown in the event's args
};

class TraceRecorder {
 public:
  // Collective over `comm` (a barrier, then t0). When `enabled` is false, record() does nothing
  // and write() only returns (still call both on every rank alike).
  explicit TraceRecorder(MPI_Comm comm = MPI_COMM_WORLD, bool enabled = true);

  bool enabled() const { return enabled_; }
  double now_us() const;  // µs since t0
  // Records one event; take `start_us` from now_us() before the work.
  void record(const std::string& name, TraceCategory category, double start_us, double duration_us,
              int micro_batch = -1);
  // The same, ending now: record(name, category, start_us, now_us() - start_us, micro_batch).
  void record_since(const std::string& name, TraceCategory category, double start_us,
                    int micro_batch = -1);
  // Names this rank's row in the viewer ("rank 3 (stage 1)"); default "rank R".
  void set_label(const std::string& label) { label_ = label; }
  const std::vector<TraceEvent>& events() const { return events_; }
  void clear() { events_.clear(); }

  // Collective over `comm`: gathers every rank's events to rank 0, which writes
  // {"traceEvents":[...]} to `path` (through a temporary name, then renamed). Throws
  // std::runtime_error on rank 0 if the file cannot be written; other ranks return.
  void write(const std::string& path) const;

 private:
  MPI_Comm comm_;
  bool enabled_;
  int rank_ = 0;
  double t0_ = 0;  // MPI_Wtime() after the barrier
  std::string label_;
  std::vector<TraceEvent> events_;
};

}  // namespace hg

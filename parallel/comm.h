// A small C-like layer over MPI with one promise: no wait is silent or endless.
//
// Every wait polls MPI_Test. When a wait has lasted longer than the timeout (default 600 s,
// `parallel.timeout`), the rank prints
//     rank R: timed out after T s waiting for <what> with peer P (tag X) ...
// (P and R are ranks of MPI_COMM_WORLD) to stderr and calls MPI_Abort(MPI_COMM_WORLD, 3). The
// blocking collectives below are non-blocking MPI calls plus such a wait, so they time out too.
//
// Waits back off: for the first 1 ms they poll, yielding the core between tests (sched_yield:
// another runnable thread gets it, else the poll goes on), so a partner arriving soon is seen
// within microseconds; then they sleep in growing steps up to 200 µs, so a rank idling in a
// pipeline bubble leaves its core to compute threads (2 cores shared by 2 ranks). A wait longer
// than 1 ms therefore may return up to ~200 µs after the message arrived.
//
// Progress: Open MPI moves large messages (rendezvous protocol) only inside MPI calls. A runtime
// that overlaps sends with compute should call comm::test() on its pending requests between
// units, else a large isend may not start until the matching wait.
//
// Counts are elements, at most INT_MAX per call (std::invalid_argument otherwise).
// Peers are ranks of the communicator passed (for the pipeline: pp_comm(), where rank = stage).
// Thread safety: the settings are atomic; requests belong to the thread that made them.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hg::comm {

// A pending non-blocking operation, with what the timeout message needs to say about it.
struct Request {
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Comm comm = MPI_COMM_NULL;
  const char* what = "";  // e.g. "recv activation"; must outlive the request (a string literal)
  int peer = -1;          // rank in `comm`; -1 for a collective (every rank of `comm`)
  int tag = -1;           // -1 for a collective
  bool is_recv = false;   // a receive can be cancelled after a timeout whose handler returned
  bool done() const { return request == MPI_REQUEST_NULL; }
};

// ---- settings (process-wide) ----
void set_timeout(double seconds);  // <= 0 waits forever; default 600
double timeout();
// Called with the full message when a wait times out. The default prints it to stderr and calls
// MPI_Abort(MPI_COMM_WORLD, 3). A handler that returns (tests) makes the wait return false; a
// timed-out receive is then cancelled and completed, any other request is left pending.
using AbortHandler = void (*)(const char* message);
void set_abort_handler(AbortHandler handler);  // nullptr restores the default

// ---- point to point (non-blocking; the buffer must stay untouched until done) ----
Request isend(const float* data, int64_t count, int peer, int tag, MPI_Comm comm,
              const char* what = "send");
Request irecv(float* data, int64_t count, int peer, int tag, MPI_Comm comm,
              const char* what = "recv");
Request isend(const int32_t* data, int64_t count, int peer, int tag, MPI_Comm comm,
              const char* what = "send");
Request irecv(int32_t* data, int64_t count, int peer, int tag, MPI_Comm comm,
              const char* what = "recv");

// ---- completion ----
// true when complete (the request becomes done()); never blocks. A done() request tests true.
bool test(Request& request);
// Blocks until complete, or the timeout. true = complete; false only if the abort handler returned.
bool wait(Request& request);
bool wait_all(Request* requests, int n);  // in order; false at the first timeout
// wait()'s loop over any completion test (an NCCL op's event, say): polls `done` with the same
// back-off until it returns true; past the timeout, calls `before_abort` (if any: NCCL aborts
// its communicator there), then the abort handler with timeout_message(describe), and returns
// false (a handler that returns). `describe` names the op; its MPI request is not touched.
bool wait_until(const Request& describe, const std::function<bool()>& done,
                const std::function<void()>& before_abort = {});

// ---- collectives over every rank of `comm` (in place: `data` is input and result) ----
void allreduce_sum(float* data, int64_t count, MPI_Comm comm);
void allreduce_sum(double* data, int64_t count, MPI_Comm comm);
void allreduce_max(int32_t* data, int64_t count, MPI_Comm comm);  // e.g. "did any rank fail?"
Request iallreduce_sum(float* data, int64_t count, MPI_Comm comm,
                       const char* what = "all-reduce sum (float)");
Request iallreduce_sum(double* data, int64_t count, MPI_Comm comm);
// ZeRO-1 (parallel.zero 1): `data` is packed rank-major, counts[r] elements for rank r in rank
// order; the reduce-scatter leaves shard [counts[me]] (=) the group's sum of this rank's block,
// the all-gather (in place) fills every rank's block of `data` from its owner. `counts` is read
// until the request completes (MPI's rule for non-blocking collectives): keep it alive.
Request ireduce_scatter_sum(const float* data, float* shard, const std::vector<int>& counts,
                            MPI_Comm comm, const char* what = "reduce-scatter sum (float)");
Request iallgather_in_place(float* data, const std::vector<int>& counts,
                            const std::vector<int>& displacements, MPI_Comm comm,
                            const char* what = "all-gather (float)");
void barrier(MPI_Comm comm);
void broadcast(void* data, int64_t bytes, int root, MPI_Comm comm);  // from `root` to all

void allreduce_max(double* data, int64_t count, MPI_Comm comm);
void allreduce_min(int32_t* data, int64_t count, MPI_Comm comm);  // e.g. "lowest failing rank"

// ---- blocking helpers for setup, checkpoints and reports (each with the timeout; `what` names
// the operation in the timeout message and must be a string literal) ----
// Byte blocks: `mine` from every rank into `all` on `root` (rank order; `all` is used on root
// only and holds size·bytes), or on every rank (allgather).
void gather(const void* mine, int64_t bytes, void* all, int root, MPI_Comm comm,
            const char* what = "gather");
void allgather(const void* mine, int64_t bytes, void* all, MPI_Comm comm,
               const char* what = "all-gather");
// Strings of any length: every rank's on `root` (rank order; empty elsewhere); `root`'s to all.
std::vector<std::string> gather_strings(const std::string& mine, int root, MPI_Comm comm,
                                        const char* what = "gather strings");
void broadcast_string(std::string& text, int root, MPI_Comm comm,
                      const char* what = "broadcast string");
// A string to one peer, and from one (its length first, then its bytes, both under `tag`).
void send_string(const std::string& text, int peer, int tag, MPI_Comm comm, const char* what);
std::string recv_string(int peer, int tag, MPI_Comm comm, const char* what);
// Communicators: MPI_Comm_idup waited with the timeout; a split after a barrier with the
// timeout (MPI has no non-blocking split: a rank missing from the barrier is reported there).
MPI_Comm duplicate(MPI_Comm comm, const char* what = "duplicate communicator");
MPI_Comm split(MPI_Comm comm, int color, int key, const char* what = "split communicator");

// Formats the timeout message for `request` (what the abort handler receives). Exposed for tests.
std::string timeout_message(const Request& request, double waited_seconds);

}  // namespace hg::comm

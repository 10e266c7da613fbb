#include "parallel/comm.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

namespace hg::comm {
namespace {

std::atomic<double> g_timeout{600.0};

void default_abort(const char* message) {
  std::fprintf(stderr, "%s\n", message);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 3);  // exit code 3: failure while running (§8)
}
std::atomic<AbortHandler> g_abort{&default_abort};

// The last operation this thread completed: the timeout message names it, because the operation
// a rank hangs on is often explained by the one before it.
struct LastCompleted {
  const char* what = nullptr;
  int peer = -1;  // world rank
  int tag = -1;
};
thread_local LastCompleted g_last;

int checked_count(int64_t count) {
  if (count < 0 || count > INT_MAX)
    throw std::invalid_argument("comm: element count " + std::to_string(count) +
                                " is outside [0, INT_MAX]; split the message");
  return static_cast<int>(count);
}

int world_rank_of(MPI_Comm comm, int rank) {
  if (comm == MPI_COMM_NULL || rank < 0) return rank;
  MPI_Group group, world_group;
  MPI_Comm_group(comm, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  int world = -1;
  MPI_Group_translate_ranks(group, 1, &rank, world_group, &world);
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
  return world;
}

Request make(MPI_Comm comm, const char* what, int peer, int tag, bool is_recv) {
  Request r;
  r.comm = comm;
  r.what = what;
  r.peer = peer;
  r.tag = tag;
  r.is_recv = is_recv;
  return r;
}

void complete(Request& request) {
  g_last.what = request.what;
  g_last.peer = request.peer >= 0 ? world_rank_of(request.comm, request.peer) : -1;
  g_last.tag = request.tag;
}

}  // namespace

void set_timeout(double seconds) { g_timeout.store(seconds); }
double timeout() { return g_timeout.load(); }
void set_abort_handler(AbortHandler handler) { g_abort.store(handler ? handler : &default_abort); }

Request isend(const float* data, int64_t count, int peer, int tag, MPI_Comm comm,
              const char* what) {
  Request r = make(comm, what, peer, tag, false);
  MPI_Isend(data, checked_count(count), MPI_FLOAT, peer, tag, comm, &r.request);
  return r;
}
Request irecv(float* data, int64_t count, int peer, int tag, MPI_Comm comm, const char* what) {
  Request r = make(comm, what, peer, tag, true);
  MPI_Irecv(data, checked_count(count), MPI_FLOAT, peer, tag, comm, &r.request);
  return r;
}
Request isend(const int32_t* data, int64_t count, int peer, int tag, MPI_Comm comm,
              const char* what) {
  Request r = make(comm, what, peer, tag, false);
  MPI_Isend(data, checked_count(count), MPI_INT32_T, peer, tag, comm, &r.request);
  return r;
}
Request irecv(int32_t* data, int64_t count, int peer, int tag, MPI_Comm comm, const char* what) {
  Request r = make(comm, what, peer, tag, true);
  MPI_Irecv(data, checked_count(count), MPI_INT32_T, peer, tag, comm, &r.request);
  return r;
}

bool test(Request& request) {
  if (request.done()) return true;
  int flag = 0;
  MPI_Test(&request.request, &flag, MPI_STATUS_IGNORE);
  if (flag) complete(request);
  return flag != 0;
}

std::string timeout_message(const Request& request, double waited_seconds) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%g", waited_seconds);
  std::string message = "rank " + std::to_string(rank) + ": timed out after " + seconds +
                        " s waiting for " + request.what;
  if (request.peer >= 0) {
    message += " with peer " + std::to_string(world_rank_of(request.comm, request.peer)) +
               " (tag " + std::to_string(request.tag) + ")";
  } else {
    // A collective: name every member, since any of them may be the one that is missing.
    int size = 0;
    MPI_Comm_size(request.comm, &size);
    message += " with peers ";
    for (int i = 0; i < size; ++i) {
      if (i) message += ',';
      message += std::to_string(world_rank_of(request.comm, i));
    }
    message += " (collective)";
  }
  if (g_last.what) {
    message += "; last completed: " + std::string(g_last.what);
    if (g_last.peer >= 0)
      message +=
          " with peer " + std::to_string(g_last.peer) + " (tag " + std::to_string(g_last.tag) + ")";
  } else {
    message += "; no operation completed before it on this thread";
  }
  message +=
      ". A peer that is stuck, slower than parallel.timeout or dead causes this; "
      "aborting the job.";
  return message;
}

// How long a wait polls (yielding the core between tests) before it starts to sleep. A partner
// that is about to arrive (a collective right after compute, a pipeline message in steady state)
// arrives within it, and the wait returns within microseconds instead of a sleep's ~100-300 us;
// a rank idling longer (a pipeline bubble) sleeps and leaves its core to others.
constexpr double kYieldSeconds = 1e-3;

bool wait(Request& request) {
  if (wait_until(request, [&] { return test(request); })) return true;
  // Only a test handler returns. Leave no receive behind that could match a later send.
  if (request.is_recv && !request.done()) {
    MPI_Cancel(&request.request);
    MPI_Wait(&request.request, MPI_STATUS_IGNORE);
  }
  return false;
}

bool wait_until(const Request& describe, const std::function<bool()>& done,
                const std::function<void()>& before_abort) {
  using Clock = std::chrono::steady_clock;
  if (done()) return true;
  const double limit = timeout();
  const auto start = Clock::now();
  auto nap = std::chrono::microseconds(0);
  for (;;) {
    if (done()) return true;
    const double waited = std::chrono::duration<double>(Clock::now() - start).count();
    if (limit > 0 && waited > limit) {
      const std::string message = timeout_message(describe, waited);
      if (before_abort) before_abort();
      g_abort.load()(message.c_str());
      return false;
    }
    if (waited > kYieldSeconds) {
      nap = std::min(std::chrono::microseconds(200), nap + std::chrono::microseconds(10));
      std::this_thread::sleep_for(nap);
    } else {
      std::this_thread::yield();  // the core goes to whoever else is runnable, if anyone is
    }
  }
}

bool wait_all(Request* requests, int n) {
  for (int i = 0; i < n; ++i)
    if (!wait(requests[i])) return false;
  return true;
}

namespace {
Request iallreduce(void* data, int64_t count, MPI_Datatype type, MPI_Op op, MPI_Comm comm,
                   const char* what) {
  Request r = make(comm, what, -1, -1, false);
  MPI_Iallreduce(MPI_IN_PLACE, data, checked_count(count), type, op, comm, &r.request);
  return r;
}
}  // namespace

Request iallreduce_sum(float* data, int64_t count, MPI_Comm comm, const char* what) {
  return iallreduce(data, count, MPI_FLOAT, MPI_SUM, comm, what);
}
Request iallreduce_sum(double* data, int64_t count, MPI_Comm comm) {
  return iallreduce(data, count, MPI_DOUBLE, MPI_SUM, comm, "all-reduce sum (double)");
}
Request ireduce_scatter_sum(const float* data, float* shard, const std::vector<int>& counts,
                            MPI_Comm comm, const char* what) {
  Request r = make(comm, what, -1, -1, false);
  MPI_Ireduce_scatter(data, shard, counts.data(), MPI_FLOAT, MPI_SUM, comm, &r.request);
  return r;
}
Request iallgather_in_place(float* data, const std::vector<int>& counts,
                            const std::vector<int>& displacements, MPI_Comm comm,
                            const char* what) {
  Request r = make(comm, what, -1, -1, false);
  MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, counts.data(), displacements.data(),
                  MPI_FLOAT, comm, &r.request);
  return r;
}
void allreduce_sum(float* data, int64_t count, MPI_Comm comm) {
  Request r = iallreduce_sum(data, count, comm);
  wait(r);
}
void allreduce_sum(double* data, int64_t count, MPI_Comm comm) {
  Request r = iallreduce_sum(data, count, comm);
  wait(r);
}
void allreduce_max(int32_t* data, int64_t count, MPI_Comm comm) {
  Request r = iallreduce(data, count, MPI_INT32_T, MPI_MAX, comm, "all-reduce max (int32)");
  wait(r);
}

void allreduce_max(double* data, int64_t count, MPI_Comm comm) {
  Request r = iallreduce(data, count, MPI_DOUBLE, MPI_MAX, comm, "all-reduce max (double)");
  wait(r);
}
void allreduce_min(int32_t* data, int64_t count, MPI_Comm comm) {
  Request r = iallreduce(data, count, MPI_INT32_T, MPI_MIN, comm, "all-reduce min (int32)");
  wait(r);
}

void barrier(MPI_Comm comm) {
  Request r = make(comm, "barrier", -1, -1, false);
  MPI_Ibarrier(comm, &r.request);
  wait(r);
}

void broadcast(void* data, int64_t bytes, int root, MPI_Comm comm) {
  Request r = make(comm, "broadcast", -1, -1, false);
  MPI_Ibcast(data, checked_count(bytes), MPI_BYTE, root, comm, &r.request);
  wait(r);
}

void gather(const void* mine, int64_t bytes, void* all, int root, MPI_Comm comm, const char* what) {
  Request r = make(comm, what, -1, -1, false);
  const int n = checked_count(bytes);
  MPI_Igather(mine, n, MPI_BYTE, all, n, MPI_BYTE, root, comm, &r.request);
  wait(r);
}

void allgather(const void* mine, int64_t bytes, void* all, MPI_Comm comm, const char* what) {
  Request r = make(comm, what, -1, -1, false);
  const int n = checked_count(bytes);
  MPI_Iallgather(mine, n, MPI_BYTE, all, n, MPI_BYTE, comm, &r.request);
  wait(r);
}

std::vector<std::string> gather_strings(const std::string& mine, int root, MPI_Comm comm,
                                        const char* what) {
  int size = 0, rank = 0;
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &rank);
  const int length = checked_count(static_cast<int64_t>(mine.size()));
  std::vector<int> lengths(rank == root ? size : 0), offsets(lengths.size());
  gather(&length, sizeof length, lengths.data(), root, comm, what);
  std::string all;
  int64_t total = 0;
  for (size_t r = 0; r < lengths.size(); ++r) {
    offsets[r] = checked_count(total);
    total += lengths[r];
  }
  all.resize(static_cast<size_t>(total));
  Request r = make(comm, what, -1, -1, false);
  MPI_Igatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR,
               root, comm, &r.request);
  wait(r);
  std::vector<std::string> out;
  for (size_t i = 0; i < lengths.size(); ++i) out.push_back(all.substr(offsets[i], lengths[i]));
  return out;
}

void broadcast_string(std::string& text, int root, MPI_Comm comm, const char* what) {
  int64_t length = static_cast<int64_t>(text.size());
  Request r = make(comm, what, -1, -1, false);
  MPI_Ibcast(&length, 1, MPI_INT64_T, root, comm, &r.request);
  wait(r);
  text.resize(static_cast<size_t>(length));
  if (length == 0) return;
  r = make(comm, what, -1, -1, false);
  MPI_Ibcast(text.data(), checked_count(length), MPI_CHAR, root, comm, &r.request);
  wait(r);
}

void send_string(const std::string& text, int peer, int tag, MPI_Comm comm, const char* what) {
  const int64_t length = static_cast<int64_t>(text.size());
  Request r[2] = {make(comm, what, peer, tag, false), make(comm, what, peer, tag, false)};
  MPI_Isend(&length, 1, MPI_INT64_T, peer, tag, comm, &r[0].request);
  MPI_Isend(text.data(), checked_count(length), MPI_CHAR, peer, tag, comm, &r[1].request);
  wait_all(r, 2);
}

std::string recv_string(int peer, int tag, MPI_Comm comm, const char* what) {
  int64_t length = 0;
  Request r = make(comm, what, peer, tag, true);
  MPI_Irecv(&length, 1, MPI_INT64_T, peer, tag, comm, &r.request);
  wait(r);
  std::string text(static_cast<size_t>(length), '\0');
  r = make(comm, what, peer, tag, true);
  MPI_Irecv(text.data(), checked_count(length), MPI_CHAR, peer, tag, comm, &r.request);
  wait(r);
  return text;
}

MPI_Comm duplicate(MPI_Comm comm, const char* what) {
  MPI_Comm copy = MPI_COMM_NULL;
  Request r = make(comm, what, -1, -1, false);
  MPI_Comm_idup(comm, &copy, &r.request);
  wait(r);
  return copy;
}

MPI_Comm split(MPI_Comm comm, int color, int key, const char* what) {
  // Every rank is here within the timeout, or the barrier names who is not.
  Request r = make(comm, what, -1, -1, false);
  MPI_Ibarrier(comm, &r.request);
  wait(r);
  MPI_Comm part = MPI_COMM_NULL;
  MPI_Comm_split(comm, color, key, &part);
  return part;
}

}  // namespace hg::comm

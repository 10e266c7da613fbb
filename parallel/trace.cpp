#include "parallel/trace.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <stdexcept>

#include "parallel/comm.h"

namespace hg {
namespace {

void append_json_string(std::string& out, const std::string& text) {
  out += '"';
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

}  // namespace

const char* trace_category_name(TraceCategory category) {
  switch (category) {
    case TraceCategory::Forward:
      return "forward";
    case TraceCategory::Backward:
      return "backward";
    case TraceCategory::Send:
      return "send";
    case TraceCategory::Recv:
      return "recv";
    case TraceCategory::Idle:
      return "idle";
    case TraceCategory::Other:
      return "other";
  }
  return "other";
}

TraceRecorder::TraceRecorder(MPI_Comm comm, bool enabled) : comm_(comm), enabled_(enabled) {
  MPI_Comm_rank(comm, &rank_);
  label_ = "rank " + std::to_string(rank_);
  comm::barrier(comm);
  t0_ = MPI_Wtime();
}

double TraceRecorder::now_us() const { return (MPI_Wtime() - t0_) * 1e6; }

void TraceRecorder::record(const std::string& name, TraceCategory category, double start_us,
                           double duration_us, int micro_batch) {
  if (enabled_) events_.push_back({name, category, start_us, duration_us, micro_batch});
}

void TraceRecorder::record_since(const std::string& name, TraceCategory category, double start_us,
                                 int micro_batch) {
  if (enabled_) record(name, category, start_us, now_us() - start_us, micro_batch);
}

void TraceRecorder::write(const std::string& path) const {
  if (!enabled_) return;
  // Each rank renders its own events as JSON objects; rank 0 concatenates the texts.
  std::string text = "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":" + std::to_string(rank_) +
                     ",\"tid\":0,\"args\":{\"name\":";
  append_json_string(text, label_);
  text += "}}";
  for (const TraceEvent& e : events_) {
    char times[96];
    std::snprintf(times, sizeof times, ",\"ts\":%.3f,\"dur\":%.3f", e.start_us, e.duration_us);
    text += ",\n{\"name\":";
    append_json_string(text, e.name);
    text += ",\"cat\":\"";
    text += trace_category_name(e.category);
    text += "\",\"ph\":\"X\",\"pid\":" + std::to_string(rank_) + ",\"tid\":0" + times;
    if (e.micro_batch >= 0)
      text += ",\"args\":{\"micro_batch\":" + std::to_string(e.micro_batch) + "}";
    text += "}";
  }

  int size = 0;
  MPI_Comm_size(comm_, &size);
  const int32_t length =
      text.size() > static_cast<size_t>(INT32_MAX) ? -1 : static_cast<int32_t>(text.size());
  // Every rank learns every length, so all of them agree on whether the gather fits an int.
  std::vector<int32_t> lengths(size);
  comm::Request r{MPI_REQUEST_NULL, comm_, "all-gather of trace sizes", -1, -1, false};
  MPI_Iallgather(&length, 1, MPI_INT32_T, lengths.data(), 1, MPI_INT32_T, comm_, &r.request);
  comm::wait(r);
  std::vector<int> counts(size, 0), displacements(size, 0);
  int64_t total = 0;
  bool fits = true;
  for (int i = 0; i < size; ++i) {
    fits = fits && lengths[i] >= 0;
    counts[i] = lengths[i];
    displacements[i] = static_cast<int>(std::min<int64_t>(total, INT32_MAX));
    total += lengths[i];
  }
  if (!fits || total > INT32_MAX)
    throw std::runtime_error("trace: more than 2 GB of trace events; trace fewer steps");
  std::string all(rank_ == 0 ? total : 0, '\0');
  comm::Request g{MPI_REQUEST_NULL, comm_, "gather of trace events", -1, -1, false};
  MPI_Igatherv(text.data(), length, MPI_CHAR, all.data(), counts.data(), displacements.data(),
               MPI_CHAR, 0, comm_, &g.request);
  comm::wait(g);
  if (rank_ != 0) return;

  const std::string temporary = path + ".tmp";
  FILE* file = std::fopen(temporary.c_str(), "wb");
  if (!file) throw std::runtime_error("trace: cannot open '" + temporary + "' for writing");
  bool ok = std::fputs("{\"traceEvents\":[\n", file) >= 0;
  for (int i = 0; i < size && ok; ++i) {
    if (i) ok = std::fputs(",\n", file) >= 0;
    ok = ok && std::fwrite(all.data() + displacements[i], 1, counts[i], file) ==
                   static_cast<size_t>(counts[i]);
  }
  ok = ok && std::fputs("\n],\"displayTimeUnit\":\"ms\"}\n", file) >= 0;
  ok = (std::fclose(file) == 0) && ok;
  if (!ok || std::rename(temporary.c_str(), path.c_str()) != 0)
    throw std::runtime_error("trace: cannot write '" + path + "' (disk full or no permission?)");
}

}  // namespace hg

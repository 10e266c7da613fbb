// Stop requests from outside: SIGUSR1 (Slurm's notice before a preemption or the time limit,
// `#SBATCH --signal=B:USR1@300`), SIGTERM and SIGINT ask a training run to save a checkpoint and
// exit 75.
//
// Why a watcher thread and not a handler: a handler runs on whichever thread the kernel picks,
// and when that thread is inside oneDNN 2.6's JIT sgemm the kernel has pointed the stack pointer
// at a heap workspace, so the signal frame is written over the heap (oneDNN issue #4845; Debian
// ships 2.6.3): "corrupted size vs. prev_size", no checkpoint. So the three signals are blocked
// first thing in `main`, before MPI, OpenMP or oneDNN create a thread (threads inherit the mask),
// and one dedicated thread takes them with sigwait and records them. No compute thread ever runs
// a handler. The trainer polls stop_signal() between steps and agrees on the stop with the other
// ranks.
#pragma once

namespace hg {

// Blocks SIGUSR1, SIGTERM and SIGINT in the calling thread (and so in every thread created after
// it) and starts the watcher. Call once, first thing in main, while the process has one thread.
// Only `hourglass train` calls it: the other commands keep the default actions (a signal ends
// them).
void start_stop_signal_watcher();

// The first stop signal received (SIGUSR1, SIGTERM or SIGINT), or 0. Later ones change nothing:
// a run that is already stopping finishes its checkpoint.
int stop_signal();

// The watcher's thread name (/proc/PID/task/TID/comm). While it waits in sigwait the kernel
// shows the three signals as unblocked in that thread only.
inline constexpr const char* kStopWatcherThreadName = "hg-stop-watcher";

}  // namespace hg

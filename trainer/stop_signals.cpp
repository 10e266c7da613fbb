#include "trainer/stop_signals.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <stdexcept>
#include <thread>

namespace hg {
namespace {

std::atomic<int> g_stop_signal{0};

sigset_t stop_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

void record(int sig) {
  int none = 0;
  g_stop_signal.compare_exchange_strong(none, sig);  // the first one is the one reported
}

// Only reached if a library thread unblocks the signals (none of ours does): such a thread
// computes nothing of ours, and recording an int is async-signal-safe. Without it the default
// action would end the process.
void on_stray_stop_signal(int sig) { record(sig); }

}  // namespace

void start_stop_signal_watcher() {
  const sigset_t set = stop_set();
  if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0)
    throw std::runtime_error("cannot block the stop signals (pthread_sigmask)");
  struct sigaction action = {};
  action.sa_handler = on_stray_stop_signal;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGUSR1, SIGTERM, SIGINT}) sigaction(sig, &action, nullptr);
  // Detached: it lives as long as the process and holds nothing to clean up.
  std::thread([set] {
    pthread_setname_np(pthread_self(), kStopWatcherThreadName);
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) == 0) record(sig);
    }
  }).detach();
}

int stop_signal() { return g_stop_signal.load(std::memory_order_relaxed); }

}  // namespace hg

// Linked into every executable of an Asan build (CMakeLists.txt): the sanitizers' default options,
// so that test discovery at build time, ctest, mpirun's ranks and hand-run binaries all behave
// alike without any environment. LSAN_OPTIONS / ASAN_OPTIONS / UBSAN_OPTIONS still override them.
//
// LeakSanitizer stays on; tests/sanitizers/lsan.supp suppresses only what Open MPI and the
// libraries under it (PMIx, hwloc, libevent) leave allocated at exit.

// Open MPI unloads its components (dlclose) during MPI_Init's selection and in MPI_Finalize, before
// the exit-time leak check: their frames would then print as "<unknown module>", which no
// suppression can name, and the stacks end there (the fast unwinder stops at the first library
// without frame pointers; the slow one makes this build ~14x slower). Not unloading anything keeps
// every frame attributable to its library. Nothing in hourglass relies on unloading.
extern "C" int dlclose(void*) { return 0; }

extern "C" const char* __lsan_default_options() {
  return "suppressions=" HG_LSAN_SUPPRESSIONS ":print_suppressions=0";
}

extern "C" const char* __ubsan_default_options() { return "print_stacktrace=1"; }

#!/usr/bin/env bash
# The whole test suite from a fresh clone (what CI runs: .ci/run): install packages, build, run
# every test; then the AddressSanitizer + UBSan build on the serial tests and a few MPI layouts
# (scripts/sanitizers.sh) and each libFuzzer harness for HG_FUZZ_SECONDS (default 30) seconds
# (scripts/fuzz.sh). Exits non-zero when any part fails; every part runs regardless.
# Arguments go to the first ctest (e.g. `-L data`) and skip the sanitizer and fuzzing parts;
# HG_SANITIZERS=0 or HG_FUZZ_SECONDS=0 skip one of them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
status=0
started=$(date +%s)
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@") || status=1
echo "test: suite in $(( $(date +%s) - started )) s"
[ $# -eq 0 ] || exit $status

started=$(date +%s)
if [ "${HG_SANITIZERS:-1}" != 0 ]; then
  bash scripts/sanitizers.sh || status=1
fi
sanitized=$(date +%s)
if [ "${HG_FUZZ_SECONDS:-30}" != 0 ]; then
  bash scripts/fuzz.sh "${HG_FUZZ_SECONDS:-30}" || status=1
fi
echo "test: sanitizers $(( sanitized - started )) s, fuzzing $(( $(date +%s) - sanitized )) s;" \
     "$([ $status -eq 0 ] && echo 'all passed' || echo 'FAILED')"
exit $status

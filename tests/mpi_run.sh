#!/bin/sh
# mpi_run.sh - runs a test program on 2 MPI ranks and checks how the job ended; exit 77 (meson: skipped) without
# mpirun. Usage: mpi_run.sh EXPECT TIMEOUT_S PROGRAM ARGS... where EXPECT is "ok" (exit 0) or "fail:TEXT" (a
# non-zero exit within TIMEOUT_S seconds with TEXT in the output: a failure on one rank must end every rank,
# never hang).
expect="$1"; limit="$2"; shift 2
if ! command -v mpirun >/dev/null 2>&1; then
  echo "SKIP: mpirun not found (install openmpi-bin libopenmpi-dev, as .ci/run does)"
  exit 77
fi
# Root (CI) needs --allow-run-as-root; 2 ranks on a 2-core machine need --oversubscribe; shared memory only
# (no network interface is needed); one POCL thread per rank so the ranks do not fight over the cores.
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_plm_rsh_agent=
export POCL_MAX_PTHREAD_COUNT="${POCL_MAX_PTHREAD_COUNT:-1}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
start=$(date +%s)
timeout -k 5 "$limit" mpirun --allow-run-as-root --oversubscribe -np 2 "$@" >"$log" 2>&1
rc=$?
secs=$(( $(date +%s) - start ))
cat "$log"
echo "mpi_run.sh: exit status $rc after ${secs} s (limit ${limit} s)"
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "FAIL: the job did not end within $limit s (a hang)"; exit 1
fi
case "$expect" in
  ok)
    [ "$rc" -eq 0 ] || { echo "FAIL: exit status $rc"; exit 1; } ;;
  fail:*)
    text="${expect#fail:}"
    [ "$rc" -ne 0 ] || { echo "FAIL: the job exited 0 although a rank failed"; exit 1; }
    grep -qF "$text" "$log" || { echo "FAIL: the output lacks the message '$text'"; exit 1; } ;;
esac
echo "PASS"

#!/bin/sh
# bench_compare.sh - cltrain vs PyTorch training throughput on this machine, runs alternated (ours, torch,
# ours, torch, ...) so that load from other processes hits both sides alike; prints each run and the medians.
#
#   tools/bench_compare.sh [--model seed-cnn] [--batch 64] [--steps 30] [--rounds 3] [--threads 2]
#                          [--wait-idle SECONDS]
#
# On a shared machine, other processes distort both sides, PyTorch's (spinning OpenMP threads) far more:
# each run line shows the CPU idle share measured just before it, and --wait-idle waits (up to SECONDS)
# before each run for a second in which the CPUs are at least 90% idle.
# Environment: BENCH_CMD (our benchmark; default "build/cltrain bench step"),
# PYTHON (default /usr/bin/python3), TORCH_REF (default ../shared/bench/pytorch_reference.py).
# Both sides train on random CIFAR-10-shaped batches with Adam; images/s are steps*batch / wall time of the
# timed steps (after warm-up) on both sides. Without PyTorch the script still runs ours and says so.
set -u
model=seed-cnn batch=64 steps=30 rounds=3 threads=2 wait_idle=0
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --wait-idle) wait_idle=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "bench_compare.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${BENCH_CMD:-}" ]; then
    BENCH_CMD="$here/build/cltrain bench step"
fi
PYTHON=${PYTHON:-/usr/bin/python3}
TORCH_REF=${TORCH_REF:-$here/../shared/bench/pytorch_reference.py}
have_torch=1
if [ ! -f "$TORCH_REF" ]; then
    echo "note: $TORCH_REF not found: PyTorch side skipped"; have_torch=0
elif ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "note: $PYTHON cannot import torch (apt-get install python3-torch libopenblas0-pthread): PyTorch side skipped"
    have_torch=0
fi

ours="" torch=""
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {if (NR==0) print ""; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

# Percent of CPU time idle over the next second (Linux /proc/stat), "?" elsewhere.
idle_pct() {
    [ -r /proc/stat ] || { echo "?"; return; }
    a=$(head -1 /proc/stat); sleep 1; b=$(head -1 /proc/stat)
    printf '%s\n%s\n' "$a" "$b" | awk '{idle[NR] = $5 + $6; tot[NR] = 0; for (i = 2; i <= NF; i++) tot[NR] += $i}
        END {d = tot[2] - tot[1]; printf "%.0f", (d > 0 ? 100 * (idle[2] - idle[1]) / d : 0)}'
}
# Waits for an idle second (up to --wait-idle seconds); prints the last idle share measured.
settle() {
    waited=0
    while :; do
        p=$(idle_pct)
        if [ "$p" = "?" ] || [ "$p" -ge 90 ] || [ "$waited" -ge "$wait_idle" ]; then echo "$p"; return; fi
        waited=$((waited + 1))
    done
}

i=1
while [ "$i" -le "$rounds" ]; do
    # ours: the mean over timed steps, like the PyTorch script's total-time figure (median also shown)
    idle=$(settle)
    out=$($BENCH_CMD --model "$model" --batch "$batch" --steps "$steps" --warmup 5 --profile-steps 0 --json 2>&1)
    mean_ms=$(printf '%s\n' "$out" | sed -n 's/.*"mean_ms": \([0-9.]*\).*/\1/p')
    med_ms=$(printf '%s\n' "$out" | sed -n 's/.*"median_ms": \([0-9.]*\).*/\1/p')
    if [ -z "$mean_ms" ]; then
        echo "cltrain run failed:"; printf '%s\n' "$out"; exit 1
    fi
    ips=$(awk -v b="$batch" -v m="$mean_ms" 'BEGIN {printf "%.0f", b * 1000 / m}')
    echo "round $i cltrain: $ips train images/s (mean $mean_ms ms/step, median $med_ms ms; cpu idle before: $idle%)"
    ours="$ours $ips"
    if [ "$have_torch" = 1 ]; then
        idle=$(settle)
        tout=$("$PYTHON" "$TORCH_REF" speed --model "$model" --batch "$batch" --steps "$steps" --threads "$threads" 2>&1)
        tips=$(printf '%s\n' "$tout" | sed -n 's/.*: \([0-9.]*\) train images\/s.*/\1/p')
        if [ -z "$tips" ]; then
            echo "round $i pytorch failed:"; printf '%s\n' "$tout"
        else
            echo "round $i pytorch: $tips train images/s (cpu idle before: $idle%)"
            torch="$torch $tips"
        fi
    fi
    i=$((i + 1))
done
mo=$(echo "$ours" | median)
echo "model $model batch $batch, $rounds rounds of $steps steps: cltrain median $mo images/s"
if [ -n "$torch" ]; then
    mt=$(echo "$torch" | median)
    echo "pytorch median $mt images/s ($threads threads); cltrain/pytorch = $(awk -v a="$mo" -v b="$mt" 'BEGIN {printf "%.2f", a / b}')"
fi

#!/bin/sh
# bench_mpi.sh - data-parallel throughput on one machine: 1 rank with 2 POCL threads against 2 ranks (mpirun) with
# 1 POCL thread each, alternating, REPS times per preset; prints each run's last-epoch images/s and gradient
# all-reduce ms per step, then the medians, then the transport alone: MPI_Allreduce of the preset's gradient bytes
# after a barrier (build/tests/test_mpi bench, or $TEST_MPI). Usage: tools/bench_mpi.sh CLTRAIN [REPS] [PRESETS...]
# Data: the Fashion-MNIST training files (first --limit images) with a 200-image test set cut from its test files.
cltrain="$1"; reps="${2:-3}"; shift 2 2>/dev/null; presets="${*:-seed-cnn cnn}"
src="${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
python3 - "$src" "$work/data" <<'PY' || exit 1
import gzip, os, shutil, struct, sys
src, dst = sys.argv[1], sys.argv[2]; os.makedirs(dst)
def read(name):
    for n in (name, name + ".gz"):
        p = os.path.join(src, n)
        if os.path.exists(p): return (gzip.open if n.endswith(".gz") else open)(p, "rb").read()
    sys.exit("missing " + name + " in " + src)
for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"): open(os.path.join(dst, n), "wb").write(read(n))
im, lb = read("t10k-images-idx3-ubyte"), read("t10k-labels-idx1-ubyte")
open(os.path.join(dst, "t10k-images-idx3-ubyte"), "wb").write(im[:4] + struct.pack(">I", 200) + im[8:16] + im[16:16 + 200 * 784])
open(os.path.join(dst, "t10k-labels-idx1-ubyte"), "wb").write(lb[:4] + struct.pack(">I", 200) + lb[8:8 + 200])
PY
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
mpi="mpirun --allow-run-as-root --oversubscribe"
median() { sort -n | awk '{a[NR]=$1} END {print NR ? (NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2) : "nan"}'; }
for p in $presets; do
  : >"$work/$p.1"; : >"$work/$p.2"; : >"$work/$p.ar"
  for r in $(seq "$reps"); do
    args="fashion-mnist --data $work/data --model $p --limit 1024 --epochs 2 --tune=off --no-augment"
    POCL_MAX_PTHREAD_COUNT=2 "$cltrain" $args >"$work/log1" 2>&1 || { cat "$work/log1"; exit 1; }
    POCL_MAX_PTHREAD_COUNT=1 $mpi -np 2 "$cltrain" $args >"$work/log2" 2>&1 || { cat "$work/log2"; exit 1; }
    i1=$(grep '^epoch 2/' "$work/log1" | sed 's/.*images\/s=//'); i2=$(grep '^epoch 2/' "$work/log2" | sed 's/.*images\/s=//')
    ar=$(grep 'gradient all-reduce' "$work/log2" | sed 's/.*all-reduce \([0-9.]*\) ms.*/\1/')
    echo "$i1" >>"$work/$p.1"; echo "$i2" >>"$work/$p.2"; echo "$ar" >>"$work/$p.ar"
    echo "$p run $r: 1 rank x 2 threads $i1 images/s; 2 ranks x 1 thread $i2 images/s, all-reduce $ar ms/step ($(uptime | sed 's/.*load/load/'))"
  done
  params=$(grep -m1 '^model:' "$work/log1" | sed 's/model: \([0-9]*\) parameters.*/\1/')
  tm="${TEST_MPI:-$(dirname "$cltrain")/tests/test_mpi}"
  [ -x "$tm" ] && $mpi -np 2 "$tm" bench $((params * 4))
  echo "$p median: 1 rank x 2 threads $(median <"$work/$p.1") images/s; 2 ranks x 1 thread $(median <"$work/$p.2") images/s; all-reduce $(median <"$work/$p.ar") ms/step"
done

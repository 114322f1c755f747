#!/bin/sh
# mpi_tool.sh - `mpirun -np 2 cltrain mnist ...` against one process on the same generated data: the same
# metrics (up to float summation order) with an uneven split of the global batch (25 = 13 + 12) and a last partial
# batch (15 = 8 + 7), one rank prints, --resume with a different number of ranks continues the same run, and a
# corrupt data file on rank 1's disk ends the job with the loader's message within a bounded time.
# Usage: mpi_tool.sh CLTRAIN WORKDIR. Exit 77 (meson: skipped) without mpirun.
cltrain="$1"; work="$2"
if ! command -v mpirun >/dev/null 2>&1; then
  echo "SKIP: mpirun not found (install openmpi-bin libopenmpi-dev, as .ci/run does)"; exit 77
fi
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_plm_rsh_agent=
mpi="mpirun --allow-run-as-root --oversubscribe"
rm -rf "$work"; mkdir -p "$work"
fails=0
check() { if eval "$1"; then echo "ok: $2"; else echo "FAIL: $2"; fails=$((fails + 1)); fi; }

# 290 training and 100 test images of 28x28: class k is a faint 6x6 square near a k-dependent place in noise
# (hard enough that 2 epochs at a low rate leave a loss whose digits the comparison sees).
python3 - "$work/data" <<'PY' || exit 1
import os, random, struct, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True); r = random.Random(3)
def make(n):
    imgs, labs = bytearray(), bytearray()
    for _ in range(n):
        k = r.randrange(10); y0, x0 = 3 + (k // 5) * 12 + r.randrange(-2, 3), 2 + (k % 5) * 5 + r.randrange(-1, 2)
        img = [r.randrange(120) for _ in range(784)]
        for y in range(y0, y0 + 6):
            for x in range(x0, x0 + 6): img[y * 28 + x] = 70 + r.randrange(120)
        imgs += bytes(img); labs.append(k)
    return imgs, labs
for pre, n in (("train", 290), ("t10k", 100)):
    imgs, labs = make(n)
    open(os.path.join(d, pre + "-images-idx3-ubyte"), "wb").write(struct.pack(">IIII", 0x803, n, 28, 28) + imgs)
    open(os.path.join(d, pre + "-labels-idx1-ubyte"), "wb").write(struct.pack(">II", 0x801, n) + labs)
PY
mkdir -p "$work/bad-data"; cp "$work/data/"* "$work/bad-data/"
head -c 1000 "$work/data/train-images-idx3-ubyte" >"$work/bad-data/train-images-idx3-ubyte"

args="mnist --data $work/data --model seed-cnn --epochs 2 --batch 25 --tune=off --seed 5 --schedule constant --lr 0.0003"
final() { grep '^final:' "$1" | sed 's/.*test_acc=\([0-9.]*\) test_loss=\([0-9.]*\).*/\1 \2/'; }
train1() { grep '^epoch 1/' "$1" | sed 's/.*train_loss=\([0-9.]*\) train_acc=\([0-9.]*\).*/\1 \2/'; }
close() { # close FILE1 FILE2 [final]: final test accuracy and loss, and unless "final" epoch 1's training loss and
  # accuracy, agree (1e-3: float summation order only)
  a="$(final "$1") $(train1 "$1")"; b="$(final "$2") $(train1 "$2")"
  if [ "$3" = final ]; then a="$(final "$1") 0 0"; b="$(final "$2") 0 0"; fi
  [ -n "$a" ] && [ -n "$b" ] && echo "$a $b" | awk '{for (i = 1; i <= 4; i++) { d = $i - $(i + 4); if (NF != 8 || d > 1e-3 || d < -1e-3) exit 1 }}'
}
timeout 600 "$cltrain" $args --checkpoint "$work/np1.ckpt" >"$work/np1.log" 2>&1
check '[ $? -eq 0 ]' "one process trains"
timeout 600 $mpi -np 2 "$cltrain" $args --checkpoint "$work/np2.ckpt" >"$work/np2.log" 2>&1
check '[ $? -eq 0 ]' "two ranks train"
echo "test acc, loss; epoch-1 train loss, acc: one process: $(final "$work/np1.log") $(train1 "$work/np1.log");" \
  "two ranks: $(final "$work/np2.log") $(train1 "$work/np2.log")"
check 'close "$work/np1.log" "$work/np2.log"' "two ranks give the metrics of one process"
check 'final "$work/np1.log" | awk "{exit !(\$1 > 0.3 && \$2 > 0.01)}"' \
  "the model learns (test accuracy above 0.3) and the loss is not yet near 0 (the comparison sees its digits)"
check '[ "$(grep -c "^final:" "$work/np2.log")" -eq 1 ] && grep -q "data parallel: 2 ranks, 12 to 13 images" "$work/np2.log"' \
  "only rank 0 prints; the global batch is split 13 + 12"
# --resume with another number of ranks: 1 epoch on 2 ranks, the second on 1 process.
timeout 600 $mpi -np 2 "$cltrain" $(echo $args | sed 's/--epochs 2/--epochs 1/') --checkpoint "$work/res.ckpt" >"$work/res1.log" 2>&1
timeout 600 "$cltrain" mnist --data "$work/data" --epochs 2 --tune=off --checkpoint "$work/res.ckpt" --resume >"$work/res2.log" 2>&1
check '[ $? -eq 0 ] && close "$work/np1.log" "$work/res2.log" final' "--resume on 1 process after 1 epoch on 2 ranks continues the same run"
# Rank 1 reads a truncated image file.
start=$(date +%s)
timeout -k 5 120 $mpi -np 1 "$cltrain" $args : -np 1 "$cltrain" $(echo $args | sed "s|$work/data|$work/bad-data|") \
  >"$work/bad.log" 2>&1
rc=$?; secs=$(( $(date +%s) - start ))
cat "$work/bad.log" | grep -v '^ *$' | head -20
check '[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc -ne 137 ]' "a bad file on rank 1 ends the job with a non-zero status ($rc after $secs s)"
check 'grep -q "bad-data/train-images-idx3-ubyte" "$work/bad.log"' "the job prints rank 1's message naming the file"
if [ $fails -ne 0 ]; then echo "$fails check(s) FAILED"; for f in "$work"/*.log; do echo "== $f"; tail -n 5 "$f"; done; exit 1; fi
echo "mpi_tool: all checks passed"

#!/usr/bin/env python3
"""test_onnx.py - ONNX export round trip: runs tests/onnx_ref (two small trained networks exported with
clt_onnx_export, with an input batch and cltrain's logits for it), then each ONNX model in ONNX Runtime, and compares
the outputs (max abs difference <= 1e-4).

usage: test_onnx.py ONNX_REF WORKDIR
ONNX Runtime is taken from $CLTRAIN_ONNX_PYTHON (the virtual environment .ci/run creates) when set, else from this
Python; where neither has it the test is skipped (exit 77) with a message saying so.
"""
import os
import subprocess
import sys

py = os.environ.get('CLTRAIN_ONNX_PYTHON')
if py and not os.environ.get('CLTRAIN_ONNX_REEXEC') and os.path.abspath(py) != os.path.abspath(sys.executable):
    os.execve(py, [py] + sys.argv, dict(os.environ, CLTRAIN_ONNX_REEXEC='1'))
try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:
    print('skip: ONNX Runtime is not available to %s (%s); .ci/run installs it in a virtual environment and runs '
          'this suite with CLTRAIN_ONNX_PYTHON=<venv>/bin/python' % (sys.executable, e))
    sys.exit(77)


def main():
    helper, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    subprocess.run([helper, work], check=True)
    failures = 0
    with open(os.path.join(work, 'cases.txt')) as f:
        cases = [l.split() for l in f if l.strip()]
    if len(cases) != 2:
        print('FAIL: onnx_ref wrote %d cases, expected 2' % len(cases))
        return 1
    for name, n, c, h, w, k in cases:
        n, c, h, w, k = map(int, (n, c, h, w, k))
        x = np.fromfile(os.path.join(work, name + '_x.bin'), dtype=np.float32).reshape(n, c, h, w)
        ref = np.fromfile(os.path.join(work, name + '_logits.bin'), dtype=np.float32).reshape(n, k)
        sess = ort.InferenceSession(os.path.join(work, name + '.onnx'), providers=['CPUExecutionProvider'])
        ins, outs = sess.get_inputs(), sess.get_outputs()
        if [i.name for i in ins] != ['x'] or [o.name for o in outs] != ['logits'] or ins[0].shape[1:] != [c, h, w]:
            print('FAIL %s: inputs %s outputs %s' % (name, [(i.name, i.shape) for i in ins], [o.name for o in outs]))
            failures += 1
            continue
        got = sess.run(None, {'x': x})[0]
        diff = float(np.abs(got - ref).max())
        print('%s: ONNX Runtime %s vs cltrain on a batch of %d: max abs difference %.3g (logits up to %.3g)' % (
            name, ort.__version__, n, diff, float(np.abs(ref).max())))
        if not diff <= 1e-4:
            print('FAIL %s: max abs difference %.3g > 1e-4' % (name, diff))
            failures += 1
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())

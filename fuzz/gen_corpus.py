#!/usr/bin/env python3
"""gen_corpus.py - writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (checked in).

usage: fuzz/gen_corpus.py [CLTRAIN_BINARY]
Seeds are small valid inputs in each harness's layout (see fuzz/fuzz_*.c); with a cltrain binary, the
checkpoint seeds come from real tiny training runs on generated 6x6 IDX data (needs an OpenCL device): they
are in the current format (2); v1_mlp, a version-1 file of cltrain 0.1, is kept as it is (nothing writes
version 1 any more)."""
import gzip
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
rng = random.Random(8)


def put(target, name, data):
    d = os.path.join(HERE, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def idx_files(n, rows, cols):
    img = struct.pack('>IIII', 0x803, n, rows, cols) + bytes(rng.randrange(256) for _ in range(n * rows * cols))
    lab = struct.pack('>II', 0x801, n) + bytes(rng.randrange(10) for _ in range(n))
    return img, lab


def models():
    # The presets' text, from whichever file holds the parser (tools/model.c, or src/model.c once it moves).
    src = ''.join(open(p).read() for p in (os.path.join(ROOT, d, 'model.c') for d in ('tools', 'src'))
                  if os.path.exists(p))
    for name, body in re.findall(r'static const char preset_(\w+)\[\] =\s*((?:"(?:[^"\\]|\\.)*"\s*)+);', src):
        text = ''.join(re.findall(r'"((?:[^"\\]|\\.)*)"', body)).encode().decode('unicode_escape')
        put('model', 'preset_' + name, text.encode())
    extra = {
        'every_layer': 'conv 4 3 stride=2 pad=same bias=0\nbatchnorm momentum=0.2 eps=1e-3\nleaky_relu 0.1\n'
                       'maxpool 2 stride=1 pad=1\navgpool 2\nsigmoid\ntanh\ngelu\nglobal_avgpool\ndropout 0.3\n'
                       'dense 16 bias=0\nrelu\ndense classes\n'
                       'train batch=8 optimizer=adamw lr=0.01 momentum=0.8 nesterov=1 weight_decay=0.1 epochs=3\n',
        'residual': '# residual blocks\nconv 8 3 pad=same\nresidual {\n  conv 8 3 pad=same\n  relu\n}\n'
                    'residual project {\n  conv 16 3 stride=2 pad=same\n  batchnorm\n}\nflatten\n'
                    'dense 10\nresidual project {\n dense 12\n}\ndense classes\n',
        'comments': '\ufeff# BOM, comments, blank lines\n\n   # indented\nflatten   # trailing\n\ndense classes\n',
        'ckpt_text': 'flatten\ndense 16\nrelu\ndense classes\n# --- cltrain data settings\n',
    }
    for k, v in extra.items():
        put('model', k, v.encode())


def idx():
    img, lab = idx_files(3, 4, 4)
    for flags, name in ((0, 'plain'), (4, 'fashion')):
        put('idx', name, bytes([flags]) + struct.pack('<I', len(img)) + img + lab)
    gi, gl = gzip.compress(img, mtime=0), gzip.compress(lab, mtime=0)
    put('idx', 'gz_images', bytes([1]) + struct.pack('<I', len(gi)) + gi + lab)
    put('idx', 'gz_both', bytes([3]) + struct.pack('<I', len(gi)) + gi + gl)
    img, lab = idx_files(1, 28, 28)
    put('idx', 'one_28x28', bytes([0]) + struct.pack('<I', len(img)) + img + lab)


def cifar():
    rec = lambda: bytes([rng.randrange(10)]) + bytes(rng.randrange(256) for _ in range(3072))
    meta = b'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n'
    put('cifar', 'meta_2', bytes([len(meta)]) + meta + rec() + rec())
    put('cifar', 'nometa_1', bytes([0]) + rec())
    short = b' a\r\nb\nc\nd\ne\nf\ng\nh\ni\nj\n'
    put('cifar', 'meta_short_names', bytes([len(short)]) + short + rec())


def cifar_tar():
    # The official layout (cifar-10-batches-bin/...) and its variants the reader accepts, gzip'd and plain.
    import io
    import tarfile
    rec = lambda: bytes([rng.randrange(10)]) + bytes(rng.randrange(4) for _ in range(3072))
    meta = b'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n'

    def tar(members, gz):
        b = io.BytesIO()
        with tarfile.open(fileobj=b, mode='w', format=tarfile.USTAR_FORMAT) as t:
            for name, data in members:
                i = tarfile.TarInfo(name)
                i.size, i.mtime = len(data), 0
                t.addfile(i, io.BytesIO(data))
        return gzip.compress(b.getvalue(), mtime=0) if gz else b.getvalue()
    put('cifar_tar', 'official_gz', tar([('cifar-10-batches-bin/batches.meta.txt', meta),
                                         ('cifar-10-batches-bin/test_batch.bin', rec() + rec())], True))
    put('cifar_tar', 'flat_tar', tar([('./test_batch.bin', rec()), ('README', b'other member')], False))


def checkpoints(cltrain):
    tmp = tempfile.mkdtemp(prefix='cltrain-seeds-')
    try:
        data = os.path.join(tmp, 'data')
        os.makedirs(data)
        for split, n in (('train', 40), ('t10k', 10)):
            img, lab = idx_files(n, 6, 6)
            open(os.path.join(data, split + '-images-idx3-ubyte'), 'wb').write(img)
            open(os.path.join(data, split + '-labels-idx1-ubyte'), 'wb').write(lab)
        runs = {
            'mlp_adam': ('flatten\ndense 6\nrelu\ndense classes\n', ['--optimizer', 'adam', '--epochs', '2']),
            'conv_bn_sgd': ('conv 2 3 pad=same\nbatchnorm\nrelu\nmaxpool 2\nflatten\ndropout 0.1\ndense classes\n',
                            ['--optimizer', 'sgd', '--nesterov', '--epochs', '1']),
        }
        for name, (model, args) in runs.items():
            mf, ck = os.path.join(tmp, name + '.model'), os.path.join(tmp, name + '.ckpt')
            open(mf, 'w').write(model)
            subprocess.run([cltrain, 'mnist', '--data', data, '--model', mf, '--batch', '16', '--tune', 'off',
                            '--checkpoint', ck] + args, check=True, stdout=subprocess.DEVNULL)
            put('checkpoint', name, open(ck, 'rb').read())
    finally:
        shutil.rmtree(tmp)


models()
idx()
cifar()
cifar_tar()
if len(sys.argv) > 1:
    checkpoints(sys.argv[1])

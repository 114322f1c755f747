#!/usr/bin/env python3
"""test_newcomer.py - what a new user meets first: the README's Quick start, data in the usual places, doctor, man page.

usage: test_newcomer.py MODE CLTRAIN SOURCE_ROOT WORK_DIR [COMPLETION LIST_PRESETS]
MODE: readme  the Quick start's command lines, extracted from README.md, run in a copy of the source tree
      data    --data with tarballs (good, truncated, of something else, with path traversal entries) and the
              default places ($CLTRAIN_DATA, $XDG_DATA_HOME/cltrain/<dataset>, ~/.local/share, the current folder)
      doctor  `cltrain doctor` with no OpenCL platform, with a cache folder it must refuse, on a healthy setup
      man     doc/cltrain.1 lists exactly the options of every command's --help; the bash completion works
Exit status 0 when every check passes; each failure is printed.
"""
import gzip
import io
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tarfile

FAILS = []


def check(cond, what, detail=''):
    if cond:
        print('ok   ' + what)
    else:
        print('FAIL ' + what + ('\n     ' + detail.replace('\n', '\n     ') if detail else ''))
        FAILS.append(what)
    return cond


# ----------------------------------------------------------------------------------------------- data

def cifar_batch(n, seed, bad_label=None):
    """n CIFAR-10 records whose classes an MLP separates by colour (see tests/test_cli.c for the idea)."""
    out = bytearray()
    s = seed
    for i in range(n):
        k = i % 10
        out.append(bad_label if bad_label is not None and i == n - 1 else k)
        for c in range(3):
            s = (s * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
            base = 40 + ((k * 7 + c * 3) % 10) * 20
            out += bytes((base + ((s >> (j % 56)) & 15)) & 255 for j in range(1024))
    return bytes(out)


def add_member(t, name, data, kind=tarfile.REGTYPE, link=''):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def cifar_members(per_batch=20, ntest=20, prefix='cifar-10-batches-bin/', bad_test_label=None):
    m = [(prefix + 'data_batch_%d.bin' % b, cifar_batch(per_batch, b)) for b in range(1, 6)]
    m.append((prefix + 'test_batch.bin', cifar_batch(ntest, 99, bad_test_label)))
    m.append((prefix + 'batches.meta.txt', b'\n'.join(n.encode() for n in [
        'airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']) + b'\n'))
    return m


def write_tar(path, members, mode='w:gz'):
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with tarfile.open(path, mode) as t:
        for m in members:
            add_member(t, *m)


def write_cifar_dir(parent, bad_test_label=None):
    d = os.path.join(parent, 'cifar-10-batches-bin')
    os.makedirs(d, exist_ok=True)
    for name, data in cifar_members(prefix='', bad_test_label=bad_test_label):
        with open(os.path.join(d, name), 'wb') as f:
            f.write(data)
    return d


def write_idx(d, ntrain=60, ntest=20, bad_label=False):
    """MNIST-format .gz files: a bright 4x4 block whose place is the class."""
    os.makedirs(d, exist_ok=True)
    for split, n in (('train', ntrain), ('t10k', ntest)):
        pix = bytearray()
        labels = bytearray()
        for i in range(n):
            k = i % 10
            img = bytearray(28 * 28)
            y0, x0 = 2 + (k // 5) * 14, 1 + (k % 5) * 5
            for y in range(y0, y0 + 4):
                for x in range(x0, x0 + 4):
                    img[y * 28 + x] = 250
            pix += img
            labels.append(k)
        if bad_label:
            labels[-1] = 42
        with gzip.open(os.path.join(d, split + '-images-idx3-ubyte.gz'), 'wb') as f:
            f.write(struct.pack('>IIII', 0x803, n, 28, 28) + bytes(pix))
        with gzip.open(os.path.join(d, split + '-labels-idx1-ubyte.gz'), 'wb') as f:
            f.write(struct.pack('>II', 0x801, n) + bytes(labels))
    return d


# ----------------------------------------------------------------------------------------------- running

def clean_env(**kw):
    """The caller's environment without the variables that choose data places; kw sets or (None) drops more."""
    env = {k: v for k, v in os.environ.items() if k not in ('CLTRAIN_DATA', 'XDG_DATA_HOME')}
    for k, v in kw.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run(argv, env=None, cwd=None, timeout=600):
    p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def last_line(text):
    lines = [l for l in text.splitlines() if l.strip()]
    return lines[-1] if lines else ''


TRAIN = ['--model', 'mlp', '--epochs', '1', '--batch', '16', '--tune', 'off']


def expect_train_ok(cltrain, what, extra, env, cwd=None, dataset='cifar10'):
    rc, out, err = run([cltrain, dataset] + extra + TRAIN, env=env, cwd=cwd)
    return check(rc == 0 and last_line(out).startswith('final: epochs=1 '), what,
                 'rc=%d\nstdout tail: %s\nstderr: %s' % (rc, out[-300:], err))


def expect_train_fail(cltrain, what, extra, env, needles, cwd=None, dataset='cifar10'):
    rc, out, err = run([cltrain, dataset] + extra + TRAIN, env=env, cwd=cwd)
    missing = [n for n in needles if n not in err]
    return check(rc == 1 and not missing and 'final:' not in out, what,
                 'rc=%d, missing from stderr: %r\nstderr: %s' % (rc, missing, err))


# ----------------------------------------------------------------------------------------------- data mode

def mode_data(cltrain, work):
    env = clean_env(HOME=os.path.join(work, 'home'))
    os.makedirs(env['HOME'], exist_ok=True)
    empty = os.path.join(work, 'empty')
    os.makedirs(empty, exist_ok=True)
    tars = os.path.join(work, 'tars')
    good = os.path.join(tars, 'cifar-10-binary.tar.gz')
    write_tar(good, cifar_members())

    # The official tarball itself, a folder holding it, the unpacked folder and its parent.
    expect_train_ok(cltrain, '--data cifar-10-binary.tar.gz', ['--data', good], env, cwd=empty)
    expect_train_ok(cltrain, '--data with the folder holding the tarball', ['--data', tars], env, cwd=empty)
    plain = write_cifar_dir(os.path.join(work, 'plain'))
    expect_train_ok(cltrain, '--data cifar-10-batches-bin', ['--data', plain], env, cwd=empty)
    expect_train_ok(cltrain, '--data with its parent', ['--data', os.path.dirname(plain)], env, cwd=empty)
    uncompressed = os.path.join(work, 'cifar.tar')
    write_tar(uncompressed, cifar_members(), mode='w')
    expect_train_ok(cltrain, '--data with an uncompressed .tar', ['--data', uncompressed], env, cwd=empty)

    # Broken archives.
    with open(good, 'rb') as f:
        blob = f.read()
    trunc = os.path.join(work, 'truncated.tar.gz')
    with open(trunc, 'wb') as f:
        f.write(blob[:len(blob) // 2])
    expect_train_fail(cltrain, 'truncated tarball', ['--data', trunc], env, ['truncated.tar.gz', 'truncated'], cwd=empty)
    other = os.path.join(work, 'other.tar.gz')
    write_tar(other, [('docs/README.txt', b'not CIFAR-10\n'), ('docs/data.csv', b'1,2,3\n')])
    expect_train_fail(cltrain, 'tarball of something else', ['--data', other], env,
                      ['other.tar.gz', 'no data_batch_1.bin in the archive'], cwd=empty)
    text = os.path.join(work, 'notes.txt')
    with open(text, 'w') as f:
        f.write('hello\n' * 100)
    expect_train_fail(cltrain, 'a file that is no archive', ['--data', text], env,
                      ['notes.txt', 'cannot be read as a tar or tar.gz archive'], cwd=empty)
    gzjunk = os.path.join(work, 'junk.tar.gz')
    with gzip.open(gzjunk, 'wb') as f:
        f.write(os.urandom(5000))
    expect_train_fail(cltrain, 'gzip of random bytes', ['--data', gzjunk], env, ['junk.tar.gz', 'libarchive'], cwd=empty)
    dup = os.path.join(work, 'dup.tar.gz')
    write_tar(dup, cifar_members() + [('cifar-10-batches-bin/test_batch.bin', cifar_batch(20, 5))])
    expect_train_fail(cltrain, 'a member twice', ['--data', dup], env, ['test_batch.bin appears twice'], cwd=empty)
    odd = os.path.join(work, 'oddsize.tar.gz')
    m = cifar_members()
    m[2] = (m[2][0], m[2][1][:-7])
    write_tar(odd, m)
    expect_train_fail(cltrain, 'a batch of the wrong size', ['--data', odd], env,
                      ['data_batch_3.bin', 'not a non-zero multiple of the 3073-byte'], cwd=empty)
    badlab = os.path.join(work, 'badlabel.tar.gz')
    write_tar(badlab, cifar_members(bad_test_label=77))
    expect_train_fail(cltrain, 'a bad label in the tarball', ['--data', badlab], env, ['bad label 77'], cwd=empty)

    # Path traversal: entries that would land outside the folder if unpacked are never used nor written.
    trav_dir = os.path.join(work, 'trav', 'inner')
    os.makedirs(trav_dir, exist_ok=True)
    trav = os.path.join(trav_dir, 'cifar-10-binary.tar.gz')
    bad_test = cifar_batch(20, 7, bad_label=200)  # would fail the run if it were read as the test batch
    write_tar(trav, [('../x', b'escaped\n'), ('../../x', b'escaped\n'), ('/tmp/cltrain-newcomer-x', b'abs\n'),
                     ('cifar-10-batches-bin/../test_batch.bin', bad_test), ('../test_batch.bin', bad_test)] +
              cifar_members())
    expect_train_ok(cltrain, 'tarball with ../x entries: trains on the real members', ['--data', trav], env,
                    cwd=trav_dir)
    written = [p for p in (os.path.join(work, 'trav', 'x'), os.path.join(work, 'x'), os.path.join(trav_dir, 'x'),
                           '/tmp/cltrain-newcomer-x', os.path.join(work, 'trav', 'test_batch.bin'))
               if os.path.exists(p)]
    check(not written and sorted(os.listdir(trav_dir)) == ['cifar-10-binary.tar.gz'] and
          sorted(os.listdir(os.path.join(work, 'trav'))) == ['inner'],
          'no archive entry was written anywhere', 'found: %r' % written)
    only_trav = os.path.join(work, 'only_trav.tar.gz')
    write_tar(only_trav, [(n, d) for n, d in cifar_members() if 'test_batch' not in n] +
              [('../test_batch.bin', cifar_batch(20, 8)), ('cifar-10-batches-bin/../test_batch.bin', cifar_batch(20, 8))])
    expect_train_fail(cltrain, 'test batch only under ../: refused', ['--data', only_trav], env,
                      ['no test_batch.bin in the archive'], cwd=empty)
    links = os.path.join(work, 'links.tar.gz')
    write_tar(links, [(n, d) for n, d in cifar_members() if 'data_batch_1' not in n] +
              [('cifar-10-batches-bin/data_batch_1.bin', b'', tarfile.SYMTYPE, '/etc/passwd')])
    expect_train_fail(cltrain, 'a symlink member is not followed', ['--data', links], env,
                      ['no data_batch_1.bin in the archive'], cwd=empty)

    # Default places, in order: $CLTRAIN_DATA, $XDG_DATA_HOME/cltrain/<dataset> (~/.local/share/...), cwd.
    home = os.path.join(work, 'home2')
    xdg = os.path.join(work, 'xdg')
    os.makedirs(home, exist_ok=True)
    env = clean_env(HOME=home)
    rc, out, err = run([cltrain, 'cifar10'] + TRAIN, env=dict(env, XDG_DATA_HOME=xdg), cwd=empty)
    needles = ['CIFAR-10 not found', '$CLTRAIN_DATA (CLTRAIN_DATA is not set)',
               '$XDG_DATA_HOME/cltrain/cifar10 (%s/cltrain/cifar10: No such file or directory)' % xdg,
               'the current folder (%s: no data_batch_1.bin' % empty,
               'To fill one: mkdir -p %s/cltrain/cifar10 && wget -P %s/cltrain/cifar10 https://' % (xdg, xdg),
               'or pass --data']
    missing = [n for n in needles if n not in err]
    check(rc == 1 and not missing, 'nothing anywhere: the error names every place and how to fill one',
          'rc=%d missing %r\n%s' % (rc, missing, err))
    rc, out, err = run([cltrain, 'cifar10'] + TRAIN, env=env, cwd=empty)
    check(rc == 1 and '~/.local/share/cltrain/cifar10 (%s/.local/share/cltrain/cifar10' % home in err,
          'without XDG_DATA_HOME the place is ~/.local/share/cltrain/cifar10', err)
    rc, out, err = run([cltrain, 'mnist'] + TRAIN, env=env, cwd=empty)
    check(rc == 1 and 'MNIST not found' in err and '~/.local/share/cltrain/mnist' in err and 'wget' in err and
          '/usr/share/datasets' not in err, 'MNIST not found: its places and how to fill one', err)

    expect_train_ok(cltrain, 'CLTRAIN_DATA = the tarball', [], dict(env, CLTRAIN_DATA=good), cwd=empty)
    expect_train_ok(cltrain, 'CLTRAIN_DATA = a folder holding the tarball', [], dict(env, CLTRAIN_DATA=tars), cwd=empty)
    os.makedirs(os.path.join(xdg, 'cltrain', 'cifar10'))
    shutil.copy(good, os.path.join(xdg, 'cltrain', 'cifar10', 'cifar-10-binary.tar.gz'))
    expect_train_ok(cltrain, '$XDG_DATA_HOME/cltrain/cifar10 holds the tarball', [], dict(env, XDG_DATA_HOME=xdg),
                    cwd=empty)
    local = os.path.join(home, '.local', 'share', 'cltrain', 'cifar10')
    write_cifar_dir(local)
    expect_train_ok(cltrain, '~/.local/share/cltrain/cifar10 holds the unpacked folder', [], env, cwd=empty)
    cwd_data = os.path.join(work, 'cwd')
    write_cifar_dir(cwd_data)
    expect_train_ok(cltrain, 'the current folder holds cifar-10-batches-bin', [], dict(env, HOME=empty), cwd=cwd_data)
    # Order: a bad data set in an earlier place is used (and named), not skipped for a later good one.
    bad = os.path.join(work, 'bad')
    write_cifar_dir(bad, bad_test_label=66)
    expect_train_fail(cltrain, '$CLTRAIN_DATA comes before the XDG place', [], dict(env, CLTRAIN_DATA=bad,
                      XDG_DATA_HOME=xdg), ['bad label 66', 'found through $CLTRAIN_DATA'], cwd=cwd_data)
    xdg_bad = os.path.join(work, 'xdg_bad')
    write_cifar_dir(os.path.join(xdg_bad, 'cltrain', 'cifar10'), bad_test_label=55)
    expect_train_fail(cltrain, 'the XDG place comes before the current folder', [], dict(env, XDG_DATA_HOME=xdg_bad),
                      ['bad label 55', 'found through $XDG_DATA_HOME/cltrain/cifar10'], cwd=cwd_data)
    home_bad = os.path.join(work, 'home_bad')
    write_cifar_dir(os.path.join(home_bad, '.local', 'share', 'cltrain', 'cifar10'), bad_test_label=44)
    expect_train_fail(cltrain, '~/.local/share/cltrain/cifar10 comes before the current folder', [],
                      dict(env, HOME=home_bad), ['bad label 44', 'found through ~/.local/share/cltrain/cifar10'],
                      cwd=cwd_data)
    missing_env = dict(env, CLTRAIN_DATA=os.path.join(work, 'no', 'such'))
    expect_train_ok(cltrain, 'a CLTRAIN_DATA without the data set falls through to the next place', [], missing_env,
                    cwd=cwd_data)

    # IDX sets: .gz files in the XDG place, CLTRAIN_DATA before Debian's folder, one file given as --data.
    idx = write_idx(os.path.join(xdg, 'cltrain', 'mnist'))
    expect_train_ok(cltrain, 'MNIST .gz files in $XDG_DATA_HOME/cltrain/mnist', [], dict(env, XDG_DATA_HOME=xdg),
                    cwd=empty, dataset='mnist')
    expect_train_ok(cltrain, '--data with one of the IDX files', ['--data', os.path.join(idx, 't10k-labels-idx1-ubyte.gz')],
                    env, cwd=empty, dataset='mnist')
    fbad = write_idx(os.path.join(work, 'fashion_bad'), bad_label=True)
    expect_train_fail(cltrain, 'Fashion-MNIST: CLTRAIN_DATA comes first (before /usr/share/datasets)', [],
                      dict(env, CLTRAIN_DATA=fbad), ['bad label 42', 'found through $CLTRAIN_DATA'], cwd=empty,
                      dataset='fashion-mnist')
    fcwd = write_idx(os.path.join(work, 'fashion_cwd'))
    expect_train_ok(cltrain, 'Fashion-MNIST in the current folder', [], env, cwd=fcwd, dataset='fashion-mnist')


# ----------------------------------------------------------------------------------------------- doctor mode

def mode_doctor(cltrain, work):
    base = clean_env(HOME=os.path.join(work, 'home'))
    os.makedirs(base['HOME'], exist_ok=True)
    tar = os.path.join(work, 'data', 'cifar-10-binary.tar.gz')
    write_tar(tar, cifar_members())
    cache = os.path.join(work, 'cache')
    healthy = dict(base, CLTRAIN_CACHE_DIR=cache, CLTRAIN_DATA=os.path.dirname(tar))
    rc, out, err = run([cltrain, 'doctor'], env=healthy)
    check(rc == 0 and 'all is well' in out and 'PROBLEM' not in out and
          re.search(r'ok +device 0 \(.*\): test kernels \(relu, add, dense\) build and give the right answer', out) and
          re.search(r'ok +cache folder \(\$CLTRAIN_CACHE_DIR\): %s \(' % re.escape(cache), out) and
          re.search(r'CLBlast \d+\.\d+\.\d+', out) and
          'ok       data CIFAR-10: %s ($CLTRAIN_DATA; test split: 20 images of 3x32x32)' % os.path.dirname(tar) in out,
          'doctor on a healthy setup: exit 0, device, kernels, cache, CLBlast, data', 'rc=%d\n%s\n%s' % (rc, out, err))
    os.makedirs(cache, mode=0o700, exist_ok=True)
    rc, out, err = run([cltrain, 'doctor'], env=healthy)
    check(rc == 0 and re.search(r'ok +cache folder \(\$CLTRAIN_CACHE_DIR\): %s \(owner .*, mode 0700\)' %
                                re.escape(cache), out) and re.search(r'ok +cache folder: [0-9.]+ [KMG]iB free', out),
          'doctor: an existing private cache folder, its owner, mode and free space', out)

    empty = os.path.join(work, 'no-vendors')
    os.makedirs(empty, exist_ok=True)
    rc, out, err = run([cltrain, 'doctor'], env=dict(healthy, OCL_ICD_VENDORS=empty))
    check(rc == 1 and 'no OpenCL platform or device found' in out and 'pocl-opencl-icd' in out and
          'no .icd file in %s (OCL_ICD_VENDORS)' % empty in out and 'problems:' in out,
          'doctor with no platform: exit 1, names pocl-opencl-icd', 'rc=%d\n%s\n%s' % (rc, out, err))

    afile = os.path.join(work, 'cache-is-a-file')
    with open(afile, 'w') as f:
        f.write('x')
    rc, out, err = run([cltrain, 'doctor'], env=dict(healthy, CLTRAIN_CACHE_DIR=afile))
    check(rc == 1 and '%s is a regular file, not a folder' % afile in out and 'fix: remove or rename' in out,
          'doctor with a file where the cache folder should be: exit 1 and a fix', 'rc=%d\n%s' % (rc, out))

    shared = os.path.join(work, 'cache-shared')
    os.makedirs(shared, exist_ok=True)
    os.chmod(shared, 0o777)
    if os.geteuid() == 0:
        os.chown(shared, 65534, 65534)  # nobody: a folder another user owns and everyone can write
        want = 'owned by uid 65534, not by uid 0'
    else:
        want = 'writable by group or others (mode 0777)'
    rc, out, err = run([cltrain, 'doctor'], env=dict(healthy, CLTRAIN_CACHE_DIR=shared))
    check(rc == 1 and want in out and 'chmod 700' in out, 'doctor with a cache folder others can write: exit 1, '
          + want, 'rc=%d\n%s' % (rc, out))

    rc, out, err = run([cltrain, 'doctor'], env=dict(healthy, CLTRAIN_DATA=os.path.join(work, 'nowhere')))
    check(rc == 1 and 'CLTRAIN_DATA=%s: No such file or directory' % os.path.join(work, 'nowhere') in out,
          'doctor with CLTRAIN_DATA naming nothing: exit 1', out)
    badtar = os.path.join(work, 'bad', 'cifar-10-binary.tar.gz')
    write_tar(badtar, cifar_members(bad_test_label=99))
    rc, out, err = run([cltrain, 'doctor'], env=dict(healthy, CLTRAIN_DATA=badtar))
    check(rc == 1 and 'does not load' in out and 'bad label 99' in out, 'doctor with a broken data set: exit 1', out)
    rc, out, err = run([cltrain, 'doctor', '--bogus'], env=healthy)
    check(rc == 2 and "unexpected argument '--bogus'" in err, 'doctor with a bad argument: exit 2', err)


# ----------------------------------------------------------------------------------------------- man mode

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tools'))


def help_options(text, cmd):
    """The options a --help text documents for `cmd` ("bench gemm"): when the text shows usages of several
    commands, only the lines from cmd's usage to the next usage count."""
    lines = text.splitlines()
    starts = [i for i, l in enumerate(lines) if re.match(r'^(usage: )?cltrain [a-z]', l.strip())]
    mine = [i for i in starts if re.match(r'^(usage: )?cltrain %s\b' % re.escape(cmd), lines[i].strip())]
    if mine:
        nxt = [i for i in starts if i > mine[0]]
        lines = lines[mine[0]:nxt[0] if nxt else len(lines)]
    # Options are what usage lines show and the heads of option lines ("  --data PATH   what it is"), not the
    # options a description refers to ("the index to pass to --device").
    heads = []
    for l in lines:
        t = l.strip()
        if re.match(r'^(usage: )?cltrain ', t) or t.startswith('['):
            heads.append(t)
        elif t.startswith('-'):
            heads.append(re.split(r'\s{2,}', t)[0])
    opts = set(re.findall(r'(?<![\w-])(--[a-z0-9][a-z0-9-]*)', '\n'.join(heads)))
    opts.discard('--help')
    return opts


def mode_man(cltrain, source, completion, lister):
    from gen_completion import parse_man, options_by_command
    with open(os.path.join(source, 'doc', 'cltrain.1'), encoding='utf-8') as f:
        man = f.read()
    by_cmd = options_by_command(parse_man(man))
    glob = by_cmd.pop('(global)', [])
    rc, out, err = run([cltrain, '--help'])
    block = out.split('\noptions:\n', 1)[1].split('\n\n', 1)[0] if '\noptions:\n' in out else ''
    check(set(re.findall(r'--[a-z0-9-]+', block)) == {o for o, _ in glob}, 'global options: man page = --help',
          '%r vs %r' % (block, glob))
    listed = out.split('\ncommands:\n', 1)[1].split('\n\n', 1)[0] if '\ncommands:\n' in out else ''
    commands = {l.split()[0] for l in listed.splitlines() if l.strip()}
    check(commands == {c.split()[0] for c in by_cmd} and len(commands) >= 9,
          'commands: man page = cltrain --help', '%r vs %r' % (sorted(commands), sorted(by_cmd)))
    for cmd, opts in by_cmd.items():
        rc, out, err = run([cltrain] + cmd.split() + ['--help'])
        documented = help_options(out + '\n' + err, cmd)
        in_man = {o for o, _ in opts} - {'--help'}
        check(documented == in_man and (documented or cmd in ('devices', 'doctor')),
              'cltrain %s: man page options = --help options' % cmd,
              'only in --help: %s; only in the man page: %s\n--help said:\n%s%s' % (
                  sorted(documented - in_man), sorted(in_man - documented), out, err))
    if shutil.which('man'):
        p = subprocess.run(['man', '--warnings', '-l', os.path.join(source, 'doc', 'cltrain.1')],
                           capture_output=True, text=True, env=dict(os.environ, MANWIDTH='100'))
        check(p.returncode == 0 and not p.stderr.strip() and 'cltrain doctor' in p.stdout,
              'man -l doc/cltrain.1 renders without warnings', p.stderr)
    else:
        print('skip: man is not installed; the page is not rendered')
    # The installed completion, driven as bash would.
    presets = subprocess.run([lister], capture_output=True, text=True, check=True).stdout.split()
    script = ('source %s\n' % shlex.quote(completion) +
              't() { COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=(); _cltrain; '
              'echo "${COMPREPLY[*]}"; }\n'
              't cltrain do\nt cltrain cifar10 --sch\nt cltrain cifar10 --model ""\nt cltrain bench ""\n'
              't cltrain bench step --pro\nt cltrain fashion-mnist --optimizer ad\nt cltrain tune gemm --tune ""\n')
    p = subprocess.run(['bash', '-c', script], capture_output=True, text=True, cwd=os.path.join(source, 'doc'))
    got = p.stdout.splitlines()
    want = ['doctor', '--schedule', None, 'gemm step', '--profile-steps', 'adam adamw', 'quick full']
    ok = len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))
    ok = ok and presets and all(pr in got[2].split() for pr in presets) and 'cltrain.1' in got[2].split()
    check(ok, 'bash completion: commands, options, values, presets (%s) and files' % ' '.join(presets),
          'got %r\n%s' % (got, p.stderr))


# ----------------------------------------------------------------------------------------------- readme mode

def quick_start_lines(readme):
    """The shell lines of the README's Quick start section (its ```sh blocks), in order."""
    sec = re.search(r'^## Quick start.*?$(.*?)^## ', readme, re.S | re.M)
    if not sec:
        return []
    lines = []
    for block in re.findall(r'^```sh\n(.*?)^```', sec.group(1), re.S | re.M):
        lines += [l for l in block.splitlines() if l.strip() and not l.lstrip().startswith('#')]
    return lines


def rewrite(segment, ctx):
    """One `&&` segment of a README line as the test runs it, or None to leave it out (with why)."""
    words = shlex.split(segment)
    if words[:2] == ['sudo', 'apt-get']:
        ctx['log'].append('left out (packages are installed already): ' + segment)
        return None
    if words[0] == 'wget':
        # A download: the file is generated where wget would have put it (-P DIR, name from the URL).
        url = words[-1]
        dest = words[words.index('-P') + 1] if '-P' in words else '.'
        name = url.rsplit('/', 1)[1]
        if name != 'cifar-10-binary.tar.gz':
            raise SystemExit('README downloads %s: the test does not know how to stand in for it' % url)
        ctx['log'].append('stood in for (generated %s): %s' % (name, segment))
        return 'python3 %s make-cifar-tarball %s/%s' % (shlex.quote(os.path.abspath(__file__)), dest, name)
    if words[0] == './build/cltrain' and len(words) > 1 and words[1] in ('cifar10', 'mnist', 'fashion-mnist'):
        ctx['log'].append('run with a small --limit: ' + segment)
        ctx['trains'] += 1
        return segment + ' --limit 64'
    if words[:2] == ['meson', 'test']:
        ctx['log'].append('left out (this test is part of that suite): ' + segment)
        return None
    return segment


def mode_readme(source, work):
    with open(os.path.join(source, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    lines = quick_start_lines(readme)
    check(len(lines) >= 3, 'README Quick start has its command lines', repr(lines))
    first = lines[0] if lines else ''
    check(first.startswith('sudo apt-get install -y ') and 'dataset-fashion-mnist' in first and
          'libarchive-dev' in first and './build/cltrain fashion-mnist ' in first,
          'the first command installs everything, builds and trains on Fashion-MNIST', first)
    check('meson setup build && meson test -C build --print-errorlogs' in lines,
          'the test command line is there verbatim', repr(lines))
    with open(os.path.join(source, '.ci', 'run'), encoding='utf-8') as f:
        ci = f.read()
    ci_pkgs = re.search(r'packages="([^"]*)"', ci, re.S).group(1).split()
    first_pkgs = shlex.split(first.split('&&')[0])[4:] if first else []
    check(sorted(ci_pkgs) == sorted(first_pkgs), 'the first command installs what .ci/run installs',
          'README: %r\n.ci/run: %r' % (first_pkgs, ci_pkgs))
    # A copy of the source tree without its build folders: the commands run there as a new user runs them.
    src = os.path.join(work, 'src')
    shutil.rmtree(work, ignore_errors=True)

    def ignore(d, names):
        if os.path.abspath(d) != os.path.abspath(source):
            return []
        return [n for n in names if n in ('.git',) or os.path.exists(os.path.join(d, n, 'meson-private'))]
    shutil.copytree(source, src, ignore=ignore, symlinks=True)
    home = os.path.join(work, 'home')
    os.makedirs(home)
    env = clean_env(HOME=home)
    # Kernel binaries compiled by POCL are cached under the real home; reuse them (it only saves time).
    env.setdefault('POCL_CACHE_DIR', os.path.join(os.environ.get('HOME', '/tmp'), '.cache', 'pocl'))
    if not os.path.isdir('/usr/share/datasets/fashion-mnist'):
        env['CLTRAIN_DATA'] = write_idx(os.path.join(work, 'fashion'), ntrain=200, ntest=100)
        print('note: /usr/share/datasets/fashion-mnist is not installed: generated Fashion-MNIST-format data in '
              '$CLTRAIN_DATA stands in')
    ctx = {'log': [], 'trains': 0}
    for line in lines:
        segs = [rewrite(s.strip(), ctx) for s in line.split('&&')]
        cmd = ' && '.join(s for s in segs if s)
        if not cmd:
            continue
        print('$ ' + cmd, flush=True)
        p = subprocess.run(['bash', '-c', cmd], cwd=src, env=env, capture_output=True, text=True, timeout=1800)
        trains = './build/cltrain' in cmd and re.search(r'cltrain (cifar10|mnist|fashion-mnist)', cmd)
        check(p.returncode == 0 and (not trains or last_line(p.stdout).startswith('final: ')),
              'README line runs: ' + line[:100], 'rc=%d\nstdout: %s\nstderr: %s' % (
                  p.returncode, p.stdout[-2000:], p.stderr[-3000:]))
        if trains:
            print('     ' + last_line(p.stdout))
    for l in ctx['log']:
        print('note: ' + l)
    check(ctx['trains'] >= 2, 'the Quick start trains Fashion-MNIST and CIFAR-10', str(ctx['trains']))


def main():
    if sys.argv[1] == 'make-cifar-tarball':  # the README test's stand-in for the CIFAR-10 download
        write_tar(sys.argv[2], cifar_members(per_batch=40, ntest=40))
        return 0
    mode, cltrain, source, work = sys.argv[1:5]
    cltrain = os.path.abspath(cltrain)  # the checks run it from other folders
    if mode != 'readme':
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
    if mode == 'data':
        mode_data(cltrain, work)
    elif mode == 'doctor':
        mode_doctor(cltrain, work)
    elif mode == 'man':
        mode_man(cltrain, source, os.path.abspath(sys.argv[5]), os.path.abspath(sys.argv[6]))
    elif mode == 'readme':
        mode_readme(source, work)
    else:
        raise SystemExit('unknown mode ' + mode)
    if FAILS:
        print('%d check(s) FAILED:\n  %s' % (len(FAILS), '\n  '.join(FAILS)))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

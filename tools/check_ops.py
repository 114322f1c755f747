#!/usr/bin/env python3
"""check_ops.py - configure-time check that the op table (src/ops/ops.def) and the folders agree.

usage: check_ops.py SOURCE_ROOT OPS INFRA_KERNELS INFRA_SOURCES (comma-separated names, as meson.build read them)

Every row needs src/ops/<op>.c defining clt__opdef_<op>, and tests/test_<op>.c; every src/ops/*.c and cl/*.cl
must belong to a row or be listed as library infrastructure; every line of ops.def must be a row or a comment.
Exits 1 with one line per problem, so that `meson setup` stops with them.
"""
import os
import re
import sys


def main():
    root, ops, infra_k, infra_s = sys.argv[1], *[a.split(',') if a else [] for a in sys.argv[2:5]]
    problems = []
    table = os.path.join(root, 'src', 'ops', 'ops.def')
    in_comment = False
    for n, line in enumerate(open(table, encoding='utf-8'), 1):
        s = line.strip()
        if in_comment or s.startswith('/*'):
            in_comment = '*/' not in s
            continue
        if s and not re.fullmatch(r'CLT_OP\([a-z0-9_]+\)', s):
            problems.append(f'src/ops/ops.def:{n}: not a row `CLT_OP(name)`: {s}')
    if len(set(ops)) != len(ops):
        problems.append('src/ops/ops.def: an op appears twice')
    for op in ops:
        src = os.path.join(root, 'src', 'ops', op + '.c')
        if not os.path.isfile(src):
            problems.append(f'op {op}: src/ops/{op}.c is missing')
        elif f'clt__opdef_{op} ' not in open(src, encoding='utf-8').read():
            problems.append(f'op {op}: src/ops/{op}.c does not define clt__opdef_{op}')
        if not os.path.isfile(os.path.join(root, 'tests', f'test_{op}.c')):
            problems.append(f'op {op}: tests/test_{op}.c is missing')
    for f in sorted(os.listdir(os.path.join(root, 'src', 'ops'))):
        name, ext = os.path.splitext(f)
        if ext == '.c' and name not in ops and name not in infra_s:
            problems.append(f'src/ops/{f} has no row in src/ops/ops.def (nor is it listed as infrastructure)')
    for f in sorted(os.listdir(os.path.join(root, 'cl'))):
        name, ext = os.path.splitext(f)
        if ext == '.cl' and name not in ops and name not in infra_k:
            problems.append(f'cl/{f} belongs to no op of src/ops/ops.def (nor is it listed as infrastructure)')
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())

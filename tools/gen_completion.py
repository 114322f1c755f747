#!/usr/bin/env python3
"""gen_completion.py - writes cltrain's bash completion from the man page's command sections and the presets.

usage: gen_completion.py MANPAGE LIST_PRESETS_PROGRAM OUTPUT

The man page (doc/cltrain.1) marks each command section with a `.\\" command: NAME...` line; the options of
that command are the `.TP` heads that follow (`.B` heads are flags, `.BI` heads take a value; a value like
"sgd|adam|adamw" lists its choices). Preset names come from the library (clt_model_preset_name), through a
small program, so that a new preset is completed without editing anything here.
"""
import re
import subprocess
import sys


def parse_man(text):
    """[(command names, [(option, value placeholder or None)])] in the order of the page. A command name is
    one word ("eval") or a command and its subcommand ("bench gemm"); "(global)" holds the global options."""
    sections, current, after_tp = [], None, False
    for line in text.splitlines():
        m = re.match(r'^\.\\" command: (.+)$', line)
        if m:
            current = ([n.strip() for n in m.group(1).split('|')], [])
            sections.append(current)
            continue
        if line.startswith('.SH') and line not in ('.SH COMMANDS', '.SH GLOBAL OPTIONS'):
            current = None
        if line.strip() == '.TP':
            after_tp = True
            continue
        if after_tp and current is not None:
            value = None
            if line.startswith('.BI'):
                m = re.search(r'"\s*([^"]+)"', line)
                value = m.group(1).strip() if m else 'VALUE'
            for opt in re.findall(r'\\-\\-([a-z0-9][a-z0-9\\-]*)', line):
                current[1].append(('--' + opt.replace('\\-', '-'), value))
        after_tp = False
    return sections


def options_by_command(sections):
    """{command name: [(option, value)]}"""
    return {name: opts for names, opts in sections for name in names}


def main():
    man, lister, out = sys.argv[1:4]
    with open(man, encoding='utf-8') as f:
        sections = parse_man(f.read())
    presets = subprocess.run([lister], check=True, capture_output=True, text=True).stdout.split()
    by_cmd = options_by_command(sections)
    glob = by_cmd.pop('(global)', [])
    commands, subs = [], {}
    for name in by_cmd:
        parts = name.split()
        if parts[0] not in commands:
            commands.append(parts[0])
        if len(parts) == 2:
            subs.setdefault(parts[0], []).append(parts[1])
    sections = by_cmd
    lines = ['# bash completion for cltrain - generated from doc/cltrain.1 by tools/gen_completion.py; do not edit.',
             '_cltrain()', '{',
             '    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}',
             '    local presets="%s"' % ' '.join(presets),
             '    if [[ $COMP_CWORD -eq 1 ]]; then',
             '        COMPREPLY=($(compgen -W "%s %s" -- "$cur"))' % (' '.join(commands), ' '.join(o for o, _ in glob)),
             '        return',
             '    fi',
             '    local key=${COMP_WORDS[1]}']
    for cmd, sl in subs.items():
        lines += ['    if [[ $key == %s ]]; then' % cmd,
                  '        if [[ $COMP_CWORD -eq 2 ]]; then',
                  '            COMPREPLY=($(compgen -W "%s%s" -- "$cur"))' % (
                      ' '.join(sl), ' ' + ' '.join(o for o, _ in sections.get(cmd, [])) if cmd in sections else ''),
                  '            return',
                  '        fi',
                  '        case ${COMP_WORDS[2]} in %s) key="%s ${COMP_WORDS[2]}" ;; esac' % ('|'.join(sl), cmd),
                  '    fi']
    # Values: choices, presets for --model, file names for FILE/PATH/DIR placeholders.
    lines += ['    case "$key:$prev" in']
    for cmd, opts in sections.items():
        for opt, value in opts:
            if value is None:
                continue
            if opt == '--model':
                action = 'COMPREPLY=($(compgen -W "$presets" -- "$cur") $(compgen -f -- "$cur"))'
            elif re.fullmatch(r'[a-z0-9]+(\|[a-z0-9]+)+', value):
                action = 'COMPREPLY=($(compgen -W "%s" -- "$cur"))' % value.replace('|', ' ')
            elif re.search(r'FILE|PATH|DIR', value):
                action = 'COMPREPLY=($(compgen -f -- "$cur"))'
            else:
                action = 'COMPREPLY=()'
            lines.append('        "%s:%s") %s; return ;;' % (cmd, opt, action))
    lines += ['    esac', '    case "$key" in']
    for cmd, opts in sections.items():
        words = ' '.join(o for o, _ in opts) + ' --help'
        lines.append('        "%s") COMPREPLY=($(compgen -W "%s" -- "$cur")) ;;' % (cmd, words))
    lines += ['    esac',
              '    if [[ $key == predict && $cur != -* ]]; then COMPREPLY+=($(compgen -f -- "$cur")); fi',
              '}', 'complete -o filenames -F _cltrain cltrain', '']
    with open(out, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines))


if __name__ == '__main__':
    main()

"""The Makefile stays portable to what macOS ships: GNU Make 3.81, bash 3.2, BSD tools.

A grep with good messages, not a parser: it guards the constructs that break there, and that
every recipe line with several commands still fails correctly without `.SHELLFLAGS` (3.81
ignores it, so there is no `-e`, `-u` or `pipefail`).
"""

from __future__ import annotations

import itertools
import re

import pytest

from tests.conftest import ROOT

# (regex, what is wrong, what to do). Checked on every logical line that is not a comment.
MAKE_FEATURES = [
    (r"^\.ONESHELL\s*:", ".ONESHELL (make 3.82)", "one recipe line per command, joined with &&"),
    (r"\$\(file\s", "$(file ...) (make 4.0)", "write the file in the recipe or in Python"),
    (r"::+=", "::= / :::= (make 4.0 / 4.4)", "use :="),
    (r"^\s*undefine\b", "undefine (make 3.82)", "assign an empty value"),
    (
        r"(^|:\s*)((export|override)\s+)*private\s+\w+\s*[:+?]?=",
        "private (make 3.82)",
        "drop it",
    ),
    (r"^\s*[A-Za-z_][\w.]*\s*!=", "VAR != command (make 4.0)", "use VAR := $(shell command)"),
    (r"\$\((guile|let|intcmp)\s", "$(guile/let/intcmp ...) (make 4.x)", "use $(if)/$(foreach)"),
    (
        r"\.(RECIPEPREFIX|EXTRA_PREREQS|NOTINTERMEDIATE|SHELLSTATUS)\b",
        "a special variable/target of make >= 3.82",
        "do without it",
    ),
    (r"^[^\t#=]*[^\s:]\s*&:", "grouped targets &: (make 4.3)", "one target with a stamp"),
    (r"(^|\s)\.WAIT(\s|$)", ".WAIT (make 4.4)", "order with prerequisites"),
    (r"--output-sync|--shuffle|--jobserver", "a make 4.x option", "drop it"),
]

BASH4_FEATURES = [
    (
        r"\$\$?\{[#!]?[A-Za-z_]\w*(\[[^]]*\])?(,,?|\^\^?)",
        "${x,,} / ${x^^} case changes (bash 4)",
        "use tr '[:upper:]' '[:lower:]'",
    ),
    (r"\$\$?\{[^}]*@[QEPAKaUuLk]\}", "${x@Q} transformations (bash 4.4)", "use printf %q"),
    (
        r"\b(declare|local|typeset)\s+-[a-zA-Z]*[An]",
        "associative arrays / namerefs (bash 4)",
        "use Python",
    ),
    (r"\b(mapfile|readarray|coproc)\b", "mapfile/readarray/coproc (bash 4)", "use while read"),
    (r"\|&", "|& (bash 4)", "use 2>&1 |"),
    (r"&>>", "&>> (bash 4)", "use >>file 2>&1"),
    (r";;&|;&", "case fall-through ;& ;;& (bash 4)", "repeat the branch"),
    (r"\bshopt\s+-s\s+(globstar|lastpipe|autocd|direxpand)", "a bash 4 shopt", "use find"),
    (r"\bwait\s+-n\b", "wait -n (bash 4.3)", "wait for each PID"),
    (r"\[\[\s+-v\s", "[[ -v ]] (bash 4.2)", 'use [ -n "${x+set}" ]'),
    (r"\b(EPOCHSECONDS|EPOCHREALTIME|BASHPID)\b", "a bash 5 variable", "use date +%s or $$"),
    (r"\{\d+\.\.\d+\.\.\d+\}", "{a..b..step} (bash 4)", "use seq or a while loop"),
    (r"\$\$?\{[A-Za-z_]\w*\[-\d+\]\}", "negative array index (bash 4.3)", "compute the index"),
]

# A command starts at the beginning of a recipe line, after ; & | ( { ` $( $(shell, after
# then/do/else, or as the program of xargs/env/exec/command/-exec.
_CMD = (
    r"(?:^|[;&|(`{]|\$\((?:shell\s+)?|\s-exec(?:dir)?\s|"
    r"\b(?:then|do|else|xargs|env|exec|command|nice|time)\s)\s*[@+-]*\s*"
)
BSD_TOOLS = [
    (_CMD + r"sed\s+(-[a-zA-Z]*\s+)*-[a-zA-Z]*[ir]\b", "sed -i / -r (GNU)", "sed -E; write a temp"),
    (_CMD + r"find\s+-", "find without a path (GNU)", "find . -name ..."),
    (
        _CMD + r"find\s[^;|&]*\s-(printf|regextype|readable|writable|executable|fprint)\b",
        "a GNU-only find primary",
        "use -exec or Python",
    ),
    (_CMD + r"xargs\s+(-\w+\s+)*-[a-zA-Z]*[rda]\b", "xargs -r/-d/-a (GNU)", "find -exec ... {} +"),
    (_CMD + r"date(\s[^;|&]*)?\s(-d\b|--date)", "date -d (GNU)", "compute dates in Python"),
    (_CMD + r"readlink\s+-[a-zA-Z]*[fem]", "readlink -f (GNU)", "use $(realpath ...) or Python"),
    (_CMD + r"grep\s+(-\w+\s+)*-[a-zA-Z]*P", "grep -P (GNU)", "use grep -E"),
    (_CMD + r"stat\s+(-c|--)", "stat -c (GNU)", "use Python"),
    (_CMD + r"ln\s+-[a-zA-Z]*r", "ln -r (GNU)", "link with an absolute path"),
    (_CMD + r"head\s+-n\s*-\d", "head -n -N (GNU)", "use sed or Python"),
    (r"\b(gensub|asorti?|strftime|systime)\(", "a gawk-only awk function", "POSIX awk or Python"),
    (
        _CMD + r"(timeout|nproc|sha256sum|sha1sum|md5sum|tac|numfmt|stdbuf|setsid|flock)\b",
        "a command macOS does not have",
        "use Python (or shasum -a 256)",
    ),
    (
        _CMD + r"(sed|find|xargs|awk|date|grep|cp|mv|rm|ln|mkdir|ls|sort|head|tail|cut|tr|wc|"
        r"stat|touch|du|df|readlink|basename|dirname|tar|mktemp)(\s[^;|&]*)?\s--[a-z]",
        "a GNU long option of a tool macOS has in its BSD version",
        "use the short POSIX option",
    ),
]

FORBIDDEN = MAKE_FEATURES + BASH4_FEATURES + BSD_TOOLS


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) with backslash-newlines joined; comment lines dropped."""
    lines, start, parts = [], 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if not parts:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        joined = " ".join(p if i == 0 else p.lstrip("\t ") for i, p in enumerate(parts))
        parts = []
        if not joined.lstrip().startswith("#"):
            lines.append((start, joined))
    return lines


def forbidden_constructs(text: str) -> list[str]:
    """One message per forbidden construct found in a Makefile's text."""
    found = []
    for number, line in logical_lines(text):
        body = line[1:] if line.startswith("\t") else line
        for pattern, what, instead in FORBIDDEN:
            if re.search(pattern, body):
                found.append(
                    f"Makefile:{number}: {what}: {line.strip()[:90]!r}; instead: {instead}"
                )
    return found


def split_commands(recipe: str) -> tuple[list[str], bool]:
    """A shell line split at top-level `;` (not in quotes, $( ), ( ) or { }); any top-level `|`?"""
    segments, current, stack, pipe = [], [], [], False
    i = 0
    while i < len(recipe):
        char = recipe[i]
        top = stack[-1] if stack else ""
        if char == "\\":
            current.append(recipe[i : i + 2])
            i += 2
            continue
        if top == '"':
            if char == '"':
                stack.pop()
            elif char == "$" and recipe[i + 1 : i + 2] == "(":
                stack.append("(")
                current.append("$(")
                i += 2
                continue
        elif char == "'":
            end = recipe.find("'", i + 1)
            end = len(recipe) - 1 if end < 0 else end
            current.append(recipe[i : end + 1])
            i = end + 1
            continue
        elif char == '"':
            stack.append('"')
        elif char == "(":
            stack.append("(")
        elif char == ")" and top == "(":
            stack.pop()
        elif char == "{" and recipe[i + 1 : i + 2].isspace() and recipe[i - 1 : i] in ("", " "):
            stack.append("{")
        elif char == "}" and top == "{" and recipe[i - 1 : i] in (" ", ";"):
            stack.pop()
        elif not stack and char == ";":
            segments.append("".join(current))
            current = []
            i += 1
            continue
        elif not stack and char == "|":
            if recipe[i + 1 : i + 2] == "|" or recipe[i - 1 : i] == "|":
                pass
            else:
                pipe = True
        current.append(char)
        i += 1
    segments.append("".join(current))
    return [s.strip() for s in segments if s.strip()], pipe


_BLOCK_END = re.compile(r"^(fi|else|elif|esac|\}|\))\b")
_CONDITION = re.compile(r"^(if|elif|while|until|case)\b")
_HARMLESS = re.compile(r"^(echo|printf|true|:|exit)(\s|$)")
_HANDLED = re.compile(
    r"(\|\|\s*exit(\s+\d+)?|\|\|\s*\{.*\bexit(\s+\d+)?\s*;?\s*\}|\bexit(\s+\d+)?)$"
)


def unsafe_without_shellflags(text: str) -> list[str]:
    """Recipe lines whose failure would go unnoticed under make 3.81 (no -e, no pipefail)."""
    found = []
    for number, line in logical_lines(text):
        if not line.startswith("\t"):
            continue
        recipe = line.strip().lstrip("@+-").strip()
        strict = re.match(r"set((\s+[-+][a-z]+|\s+pipefail)+)\s*;", recipe)
        errexit = bool(strict and re.search(r"-[a-z]*e", strict.group(1)))
        pipefail = bool(strict and "pipefail" in strict.group(1))
        segments, pipe = split_commands(recipe)
        if pipe and not pipefail:
            found.append(
                f"Makefile:{number}: a pipe `|` in {recipe[:70]!r}: without pipefail (make 3.81 "
                "ignores .SHELLFLAGS) a failure left of it is lost; avoid the pipe or start the "
                "line with `set -o pipefail;`"
            )
        for segment, following in itertools.pairwise(segments) if not errexit else ():
            bare = re.sub(r"^(then|else|do|\{)\s+", "", segment)
            if (
                _BLOCK_END.match(following)
                or _CONDITION.match(segment)
                or _HARMLESS.match(bare)
                or _HANDLED.search(bare)
            ):
                continue
            found.append(
                f"Makefile:{number}: {bare[:70]!r} is followed by `;`: make 3.81 ignores "
                ".SHELLFLAGS (no -e), so its failure would be ignored; join with `&&`, end it "
                "with `|| exit 1`, or start the line with `set -e;`"
            )
    return found


MAKEFILE = (ROOT / "Makefile").read_text() + (ROOT / "lab.mk").read_text()


def test_the_makefile_uses_nothing_newer_than_make_381_bash_32_and_bsd_tools():
    found = forbidden_constructs(MAKEFILE)
    assert not found, "\n".join(found)


def test_recipe_lines_fail_without_shellflags():
    found = unsafe_without_shellflags(MAKEFILE)
    assert not found, "\n".join(found)


def test_the_makefile_still_has_the_strict_preamble():
    for line in ("SHELL := bash", ".SHELLFLAGS := -eu -o pipefail -c", ".DELETE_ON_ERROR:"):
        assert re.search(rf"^{re.escape(line)}\s*$", MAKEFILE, re.MULTILINE), line


# The checks themselves catch what they promise (a grep that cannot fail guards nothing).
@pytest.mark.parametrize(
    "snippet",
    [
        ".ONESHELL:",
        "$(file >out,$(X))",
        "X ::= 1",
        "undefine X",
        "private X := 1",
        "X != date",
        "a b &: c",
        "\t@echo ${name,,}",
        "\t@echo $${name^^}",
        "\t@declare -A seen",
        "\t@mapfile -t lines < f",
        "\t@readarray x",
        "\t@make 2>&1 |& tee log",
        "\t@echo hi &>> log",
        "\t@sed -i 's/a/b/' f",
        "\t@sed -i'' -e 's/a/b/' f",
        "\tfind . -name x -printf '%p'",
        "\tfind -name x",
        "\tfind . -print0 | xargs -0 -r rm",
        "\t@date -d yesterday",
        "\t@date --date=@0",
        "\t@readlink -f x",
        "\t@grep -P 'x' f",
        "\t@cp --parents a b",
        "\t@x=$$(timeout 5 curl x)",
        '\t@awk \'{print gensub(/a/, "b", "g")}\' f',
        "Y := $(shell sed -i s/a/b/ f)",
    ],
)
def test_the_grep_catches(snippet):
    assert forbidden_constructs(snippet + "\n")


@pytest.mark.parametrize(
    "snippet",
    [
        "\tcd $(ROOT) && rm -rf build",
        "\t@$(VPY) -m fhvlab data --months 2021-01",
        '\t@awk \'BEGIN {FS = ":.*## "} /^##@/ {printf "%s", $$0; next}\' $(MAKEFILE_LIST)',
        "\tfind $(ROOT) -name __pycache__ -type d -prune -exec rm -rf {} +",
        "\t@uv python find --system '>=3.11'",
        "\t@$(VENV)/bin/prefect worker start --pool x --run-once",
        "X := $(or $(Y),z)",
        '\t@echo "$${HOME}"',
    ],
)
def test_the_grep_lets_portable_lines_pass(snippet):
    assert forbidden_constructs(snippet + "\n") == []


@pytest.mark.parametrize(
    "recipe",
    [
        "\tcd build; rm -rf *",
        "\t@$(VPY) -m fhvlab check; $(VPY) -m fhvlab run",
        "\t@for f in a b; do cp $$f dest; done",
        "\t@find . -name x -print0 | xargs -0 rm -f",
        "\t@a && b; c",
        "\t@x=$$(false); echo $$x; run",
    ],
)
def test_the_shellflags_check_catches(recipe):
    assert unsafe_without_shellflags(recipe + "\n")


@pytest.mark.parametrize(
    "recipe",
    [
        '\t@echo "tour: 1/6"; $(MAKE) data',
        '\t@cmd || { echo "error: x; y" >&2; exit 1; }',
        "\t@py=\"$$(run 'a; b')\" || exit 1; \\\n\t  echo go; \\\n"
        "\t  cd x && sync || { echo no >&2; exit 1; }",
        "\t@if [ -x $(VPY) ]; then $(VPY) stop; fi",
        "\t@if a; then \\\n\t  echo x; \\\n\telif b; then \\\n\t  c && echo d; \\\n\tfi",
        "\t@set -e; cd x; rm -rf y",
        "\t@set -eo pipefail; a | b",
        "\t@awk '{print $$1; next}' f",
    ],
)
def test_the_shellflags_check_lets_safe_lines_pass(recipe):
    assert unsafe_without_shellflags(recipe + "\n") == []

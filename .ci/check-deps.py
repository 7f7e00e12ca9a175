#!/usr/bin/env python3
"""Every command the tests and CI scripts run is declared in mk/deps.txt.

Reads the tests (wrapper-tests/, tests/, src/**/tests*.rs, src/**/testutil.rs
and the #[cfg(test)] part of every other src/ file), the CI and kernel
scripts and the Makefiles, collects the commands they run, and fails naming
each one that no line of mk/deps.txt provides and that is not in ALWAYS
(what every Debian 12 has). A missing declaration would otherwise show up
only on a fresh machine, as `make test` failing there.

What counts as running a command (a static reading, so it errs towards
reporting; declare the command or, if it really is on every Debian, add it
to ALWAYS):
  Rust:  Command::new("X"); `command -v X` in a string; in the test files,
         a string constant or literal naming a versioned LLVM tool
         ("clang-22", "llvm-nm-22").
  shell: the first word of each simple command (after ;, |, &&, ||, $(,
         backquote, a subshell's paren, if/then/do/...), past assignments
         and wrappers (env, sudo, timeout, setsid, exec, ...), unless it is
         a variable, a path, a shell builtin or a function of the same file;
         versioned LLVM tool names anywhere. Not seen: commands held in a
         variable or an array (declare those by hand), `command -v` probes.
  make:  recipe lines, cmd_* variables and $(shell ...) read as shell.
Then every command of a `test` line and of ALWAYS must be on PATH (the
check runs after `make deps`): a command declared under the wrong package
fails here too.
"""
import os
import re
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPS = os.path.join(ROOT, "mk", "deps.txt")

# On every Debian 12: the Essential packages (coreutils, util-linux,
# bsdutils, findutils, diffutils, grep, sed, tar, gzip, dash, bash,
# debianutils, perl-base, ncurses-bin, dpkg), mawk (priority required) and
# apt. Not kill: a shell builtin, /bin/kill is procps (not on minimal
# images). sudo: only used when not root, by someone allowed to install packages.
ALWAYS = set("""
sh bash dash cat true false echo printf test [ env sleep timeout nproc mktemp
rm rmdir mkdir mv cp ln ls chmod chown touch install readlink realpath basename
dirname head tail wc tee tr cut sort uniq comm paste join od cmp diff sha256sum
sha1sum md5sum stat date id uname nohup setsid flock script stty tty find
xargs grep egrep fgrep sed awk mawk tar gzip gunzip zcat perl which tput
mountpoint du df seq yes expr sync getconf dpkg dpkg-query dpkg-deb apt-get apt-cache
sudo
""".split())

# kdthin-ld's own programs: .ci/check-deb.sh installs its package and then
# runs them from PATH, as the package's users do.
OWN = {"kdthin-ld", "kdthin"}

SHELL_WORDS = set("""
if then else elif fi do done while until for in case esac function select time
! { } [[ ]] ( ) : . source exit return break continue local declare typeset
export readonly unset shift set shopt trap wait read cd pushd popd eval exec
command builtin type hash alias pwd unalias let getopts umask ulimit printf echo
true false test [ jobs fg bg disown kill mapfile readarray caller enable
""".split())

# Wrappers: the command they run comes later on the line. The number is how
# many arguments of their own to skip (options are skipped anyway).
WRAPPERS = {"env": 0, "sudo": 0, "exec": 0, "nohup": 0, "setsid": 0, "time": 0,
            "timeout": 1, "need_root": 0, "logged": 1, "xargs": 0, "command": 0}

LLVM_TOOL = re.compile(r"\b((?:clang|clang\+\+|ld\.lld|lld|llc|opt|llvm-[a-z0-9-]+?)-[0-9]+)\b")


def declared():
    """{command: package}, and the commands of the `test` lines."""
    provided, test = {}, set()
    for n, line in enumerate(open(DEPS), 1):
        line = line.split("#", 1)[0].split()
        if not line:
            continue
        if len(line) < 3:
            sys.exit(f"check-deps: {DEPS}:{n}: want 'scope package command...' (- for none)")
        for c in line[2:]:
            if c != "-":
                provided.setdefault(c, line[1])
                if line[0] == "test":
                    test.add(c)
    return provided, test


def files(top, pred):
    for d, _, names in os.walk(os.path.join(ROOT, top)):
        for name in sorted(names):
            p = os.path.join(d, name)
            if pred(p):
                yield p


def rel(p):
    return os.path.relpath(p, ROOT)


# ---------------------------------------------------------------- Rust

def rust_uses(path, text, test_file):
    """(command, line) pairs."""
    out = []

    def add(cmd, pos):
        out.append((cmd, text.count("\n", 0, pos) + 1))

    for m in re.finditer(r'Command::new\(\s*"([^"]+)"', text):
        add(os.path.basename(m.group(1)), m.start())
    for m in re.finditer(r"command -v ([A-Za-z0-9._+-]+)", text):
        add(m.group(1), m.start())
    if test_file:
        for m in re.finditer(r'"([^"\\]*)"', text):
            if LLVM_TOOL.fullmatch(m.group(1)):
                add(m.group(1), m.start())
    return out


def rust_sources():
    for p in files("src", lambda p: p.endswith(".rs")):
        text = open(p).read()
        name = os.path.basename(p)
        if name.startswith("tests") or name == "testutil.rs":
            yield p, text, True
        elif "#[cfg(test)]" in text:
            i = text.index("#[cfg(test)]")
            # Blank out the production part, keeping line numbers.
            yield p, re.sub(r"[^\n]", " ", text[:i]) + text[i:], False
    for top in ("wrapper-tests", "tests"):
        for p in files(top, lambda p: p.endswith(".rs")):
            yield p, open(p).read(), True


# ---------------------------------------------------------------- shell

def strip_heredocs_and_comments(lines):
    out, end = [], None
    for line in lines:
        if end is not None:
            out.append("")
            if line.strip() == end:
                end = None
            continue
        m = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if m:
            end = m.group(1)
        # A comment: # at the start of a word, outside quotes (roughly).
        q, cut = None, len(line)
        for i, ch in enumerate(line):
            if q:
                if ch == q:
                    q = None
            elif ch in "'\"":
                q = ch
            elif ch == "#" and (i == 0 or line[i - 1] in " \t;"):
                cut = i
                break
        out.append(line[:cut])
    return out


MASK = str.maketrans({c: "_" for c in " \t;|&(){}!<>`"})


def code_only(line):
    """The line with quoted text masked (one word, no separators), except
    command substitutions inside double quotes; ${...}, $((...)) and
    ((...)) become a bare $."""
    out, i, stack = [], 0, ["code"]  # "code", "sub" ($( in quotes), "array", '"', "'"
    depth = [0]
    while i < len(line):
        st, c, two = stack[-1], line[i], line[i:i + 2]
        if st in ("code", "sub"):
            if line.startswith("$((", i) or (two == "((" and (i == 0 or line[i - 1] in " \t;")):
                j = line.find("))", i)
                out.append("$")
                i = len(line) if j < 0 else j + 2
                continue
            if two == "${":
                j = line.find("}", i)
                out.append("$")
                i = len(line) if j < 0 else j + 1
                continue
            if two == "=(":
                # An array's elements: words, not commands.
                stack.append("array")
                out.append("=_")
                i += 2
                continue
            if c in "'\"":
                stack.append(c)
                out.append(c)
            elif c == "(":
                depth[-1] += 1
                out.append(c)
            elif c == ")" and st == "sub" and depth[-1] == 0:
                stack.pop()
                depth.pop()
                out.append(c)
            else:
                if c == ")":
                    depth[-1] -= 1
                out.append(c)
        elif st == "array":
            if c in "'\"":
                stack.append(c)
                out.append(c)
            elif two == "$(":
                stack.append("sub")
                depth.append(0)
                out.append(" $(")
                i += 2
                continue
            elif c == ")":
                stack.pop()
                out.append("_")
            else:
                out.append(c.translate(MASK))
        elif st == "'":
            if c == "'":
                stack.pop()
            out.append(c if c == "'" else "\n_" if c == "\n" else c.translate(MASK))
        else:  # in double quotes
            if c == "\\":
                out.append("__")
                i += 2
                continue
            if two == "$(" and not line.startswith("$((", i):
                stack.append("sub")
                depth.append(0)
                out.append(" $(")
                i += 2
                continue
            if two == "${":
                j = line.find("}", i)
                out.append("$")
                i = len(line) if j < 0 else j + 1
                continue
            if c == '"':
                stack.pop()
            out.append(c if c == '"' else "\n_" if c == "\n" else c.translate(MASK))
        i += 1
    return "".join(out)


SEP = re.compile(r"\$\(|`|&&|\|\||;;|[;|&()]|(?:^|\s)[{}!](?=\s|$)|\b(?:then|do|else|if|elif|while|until)\b")
CASE_PATTERN = re.compile(r"(^|;;)\s*\(?[^()\s;][^();]*\)")


def shell_line_uses(line, functions, in_case=False):
    """LINE: shell code, quotes already masked (code_only)."""
    cmds = []
    if in_case:
        line = CASE_PATTERN.sub(r"\1 ;", line)
    for seg in SEP.split(line):
        words = seg.split()
        skip = 0
        while words:
            w = words[0].strip("\"'")
            if re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=", w) or w.startswith(("-", "<", ">", "2>", "&>")) \
                    or re.fullmatch(r"[0-9]+[smhd]?", w):
                words.pop(0)
                continue
            if skip:
                skip -= 1
                words.pop(0)
                continue
            if w in WRAPPERS and not (w == "command" and len(words) > 1 and words[1] == "-v"):
                skip = WRAPPERS[w]
                words.pop(0)
                continue
            break
        if not words:
            continue
        w = words[0].strip("\"'")
        if (not w or w in SHELL_WORDS or w in functions or "$" in w or "/" in w or "=" in w
                or not re.fullmatch(r"[A-Za-z][A-Za-z0-9._+-]*", w)):
            continue
        cmds.append(w)
    return cmds


def join_continuations(text):
    """Backslash-newline joined; the lines it removes are added back after
    the joined line, so line numbers stay right."""
    out = []
    for chunk in text.split("\n"):
        if out and out[-1][0].endswith("\\"):
            out[-1] = (out[-1][0][:-1] + " " + chunk, out[-1][1] + 1)
        else:
            out.append((chunk, 0))
    return "\n".join(line + "\n" * extra for line, extra in out)


def shell_text_uses(text, functions):
    """(command, line) pairs of a piece of shell code."""
    text = join_continuations(text)
    llvm = [(m.group(1), text.count("\n", 0, m.start()) + 1) for m in LLVM_TOOL.finditer(text)]
    lines = code_only("\n".join(strip_heredocs_and_comments(text.split("\n")))).split("\n")
    out, case = [], 0
    for n, line in enumerate(lines, 1):
        case += len(re.findall(r"(?:^|[\s;])case\s", line))
        out += [(c, n) for c in shell_line_uses(line, functions, case > 0)]
        case -= len(re.findall(r"(?:^|[\s;])esac\b", line))
    return llvm + out


def shell_uses(path, text):
    functions = set(re.findall(r"^\s*(?:function\s+)?([A-Za-z_][A-Za-z0-9_-]*)\s*\(\)", text, re.M))
    return shell_text_uses(text, functions)


def make_uses(path, text):
    out = []
    lines = join_continuations(text).split("\n")
    for n, line in enumerate(lines, 1):
        shell = []
        if line.startswith("\t"):
            shell.append(line.lstrip("\t").lstrip("@-+"))
        elif re.match(r"^cmd_\S+\s*[:?]?=", line):
            shell.append(line.split("=", 1)[1])
        shell += re.findall(r"\$\(shell ([^)]*)\)", line)
        for s in shell:
            s = s.replace("$$", "$")
            s = re.sub(r"\$\((?!shell)[A-Za-z_@<^*][^)]*\)", "$V", s)
            out += [(c, n) for c, _ in shell_text_uses(s, set())]
    return out


def shell_sources():
    for p in files(".ci", lambda p: p.endswith(".sh") or os.path.basename(p) == "run"):
        yield p
    yield from files("mk", lambda p: p.endswith(".sh"))
    yield os.path.join(ROOT, "kernel-fixtures", "kernel.sh")
    yield from files("kernel-fixtures/mini", lambda p: p.endswith(".sh"))


def make_sources():
    yield os.path.join(ROOT, "Makefile")
    yield from files("mk", lambda p: p.endswith(".mk"))
    yield from files("kernel-fixtures/mini", lambda p: os.path.basename(p) == "Makefile")


def main():
    provided, test = declared()
    uses = []
    for p, text, test_file in rust_sources():
        uses += [(c, p, n) for c, n in rust_uses(p, text, test_file)]
    for p in shell_sources():
        uses += [(c, p, n) for c, n in shell_uses(p, open(p).read())]
    for p in make_sources():
        uses += [(c, p, n) for c, n in make_uses(p, open(p).read())]
    if len(sys.argv) > 1 and sys.argv[1] == "--list":
        for c in sorted({c for c, _, _ in uses}):
            where = next(f"{rel(p)}:{n}" for cc, p, n in uses if cc == c)
            state = provided.get(c, "ALWAYS" if c in ALWAYS else "OWN" if c in OWN else "UNDECLARED")
            print(f"{c:24} {state:20} {where}")
        return 0
    bad = {}
    for c, p, n in uses:
        if c not in provided and c not in ALWAYS and c not in OWN:
            bad.setdefault(c, f"{rel(p)}:{n}")
    for c, where in sorted(bad.items()):
        print(f"check-deps: FAIL: {where} runs '{c}', which no line of mk/deps.txt provides"
              " (add the package that has it, or to ALWAYS in .ci/check-deps.py if every Debian has it)",
              file=sys.stderr)
    # `make checks` runs after `make deps`: a test command that is not on
    # PATH now is declared under the wrong package (or ALWAYS is wrong).
    absent = sorted(c for c in test | (ALWAYS - {"sudo", "["}) if not shutil.which(c))
    for c in absent:
        where = f"mk/deps.txt says {provided[c]} provides it" if c in provided else "it is in ALWAYS"
        print(f"check-deps: FAIL: '{c}' is not installed, but {where}", file=sys.stderr)
    ok = len({c for c, _, _ in uses}) - len(bad)
    print(f"check-deps: {ok} commands declared, {len(bad)} not")
    return 1 if bad or absent else 0


if __name__ == "__main__":
    sys.exit(main())

//! Helpers shared by the black-box tests: a private copy of the fixture
//! tree, running tools with their command line kept for failure messages,
//! and comparisons of link results.
//!
//! On a failed test the tree is kept and its path printed; every failure
//! message carries the command that failed, ready to paste.

pub mod distributed;
pub mod snapshot;

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::SystemTime;

pub use distributed::{assert_distributed, BAR_O, FOO_O, PROG, VMLINUX_O};
pub use snapshot::Snapshot;

pub const CLANG: &str = "clang-22";
pub const LLD: &str = "ld.lld-22";
pub const AR: &str = "llvm-ar-22";
pub const NM: &str = "llvm-nm-22";
pub const OBJDUMP: &str = "llvm-objdump-22";
pub const PROFDATA: &str = "llvm-profdata-22";

/// Bitcode objects that end up in the `vmlinux.o` and `prog` links
/// (`lib/unused.o` is a lazy member that nothing pulls in).
/// `virt/kvm/kvm_main.o` is compiled, and named in its .cmd file, as
/// `arch/x86/kvm/../../../virt/kvm/kvm_main.o`.
pub const VMLINUX_BITCODE: &[&str] = &[
    "init/main.o",
    "arch/x86/kvm/x86.o",
    "virt/kvm/kvm_main.o",
    "kernel/printk.o",
    "kernel/sched.o",
    "mm/slab.o",
    "lib/string.o",
];
/// Bitcode objects of the multi-object module `mod/foo.o`.
pub const FOO_BITCODE: &[&str] = &["mod/foo_main.o", "mod/foo_util.o"];
/// What the fixture's `$(LD)` link steps write (`mod/bar.o` is written by
/// its compile rule).
pub const LINK_OUTPUTS: &[&str] = &["vmlinux.o", "mod/foo.o", "prog"];

pub fn kdthin_ld() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kdthin-ld"))
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kernel-fixtures/mini")
}

/// The running test's name, as libtest names its thread.
pub fn test_name() -> String {
    std::thread::current().name().unwrap_or("test").to_string()
}

/// True when the LLVM 22 tools and make are installed. Otherwise prints why
/// the test is skipped, or panics when KDTHIN_REQUIRE_TOOLS=1.
pub fn have_toolchain() -> bool {
    static MISSING: OnceLock<Vec<&'static str>> = OnceLock::new();
    let missing = MISSING.get_or_init(|| {
        [CLANG, LLD, AR, NM, OBJDUMP, PROFDATA, "make"]
            .into_iter()
            .filter(|tool| {
                let ok = Command::new(tool)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                !ok
            })
            .collect()
    });
    if missing.is_empty() {
        return true;
    }
    let why = format!("not installed: {}", missing.join(", "));
    if std::env::var_os("KDTHIN_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("{why} (and KDTHIN_REQUIRE_TOOLS=1)");
    }
    // Straight to fd 2: libtest would hide eprintln! output of a passing test.
    let _ = writeln!(std::io::stderr(), "SKIP {}: {why}", test_name());
    false
}

/// Return from the test (passing) when the toolchain is absent.
macro_rules! require_toolchain {
    () => {
        if !$crate::support::have_toolchain() {
            return;
        }
    };
}
pub(crate) use require_toolchain;

/// Which program a link runs as `$(LD)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linker {
    /// The real ld.lld: in-process ThinLTO, the reference.
    Lld,
    /// The program under test.
    Kdthin,
}

impl Linker {
    pub fn program(self) -> OsString {
        match self {
            Linker::Lld => LLD.into(),
            Linker::Kdthin => kdthin_ld().into(),
        }
    }
}

/// Which kernel's `.cmd` format the fixture writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdFormat {
    /// 6.12: `savedcmd_<target> := ...`
    Savedcmd,
    /// 6.1: `cmd_<target> := ...`
    Cmd,
}

impl CmdFormat {
    pub fn prefix(self) -> &'static str {
        match self {
            CmdFormat::Savedcmd => "savedcmd_",
            CmdFormat::Cmd => "cmd_",
        }
    }
}

/// A finished command with everything needed to report it.
pub struct Ran {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with the full report unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Ran {
        assert!(self.success(), "command failed\n{}", self.report());
        self
    }

    /// Panics with the full report unless the command exited non-zero
    /// (a signal does not count as a clean failure).
    #[track_caller]
    pub fn failed(self) -> Ran {
        assert!(self.status.code().is_some_and(|c| c != 0), "command should have exited non-zero\n{}", self.report());
        self
    }

    #[track_caller]
    pub fn stderr_contains(&self, needle: &str) -> &Ran {
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}\n{}", self.report());
        self
    }

    pub fn report(&self) -> String {
        let mut s = format!("$ {}\n=> {}\n", self.cmdline, describe_status(self.status));
        for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if !text.is_empty() {
                let _ = write!(s, "--- {name} ---\n{}\n", text.trim_end());
            }
        }
        s
    }
}

pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => format!("{status}"),
    }
}

/// Quote for a POSIX shell, so a printed command can be pasted.
pub fn shell_quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let safe = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `cd DIR && VAR=... prog args...`, as the command would be re-run.
pub fn command_line(cmd: &Command) -> String {
    let mut s = String::new();
    if let Some(dir) = cmd.get_current_dir() {
        let _ = write!(s, "cd {} && ", shell_quote(dir.as_os_str()));
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => {
                let _ = write!(s, "{}={} ", k.to_string_lossy(), shell_quote(v));
            }
            None => {
                let _ = write!(s, "-u {} ", k.to_string_lossy());
            }
        }
    }
    s.push_str(&shell_quote(cmd.get_program()));
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&shell_quote(a));
    }
    s
}

/// Run to completion, capturing stdout and stderr.
impl Ran {
    /// A finished command's result, its output taken as (lossy) text.
    pub fn from_output(cmdline: String, out: std::process::Output) -> Ran {
        Ran {
            cmdline,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub fn run(cmd: &mut Command) -> Ran {
    let cmdline = command_line(cmd);
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot start: {e}\n$ {cmdline}"));
    let ran = Ran::from_output(cmdline, out);
    // libtest shows a test's captured output only when it fails: then this
    // is the log of every command it ran.
    eprintln!("{}", ran.report());
    ran
}

/// The environment kbuild gives `$(LD)`, without anything from the caller
/// that could change the outcome (make's jobserver, our own KDTHIN_*
/// settings, a CC that is not clang). The backend cache is off unless a
/// test turns it on with a cache directory of its own: tests must neither
/// fill the developer's cache nor be served from it.
pub fn clean_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("KDTHIN_") || matches!(&*k, "MAKEFLAGS" | "MFLAGS" | "MAKELEVEL" | "LD" | "AR" | "KCFLAGS") {
            cmd.env_remove(&*k);
        }
    }
    cmd.env("CC", CLANG).env("KDTHIN_CACHE", "off")
}

/// A private, writable copy of `kernel-fixtures/mini` under cargo's test
/// temp dir. Kept (and its path printed) when the test panics.
pub struct Tree {
    tmp: Option<tempfile::TempDir>,
    root: PathBuf,
    pub format: CmdFormat,
}

impl Tree {
    /// A clean copy of the fixture, nothing built.
    pub fn new(format: CmdFormat) -> Tree {
        let tree = Tree::copy_from(&fixture_dir(), format);
        // In case someone built inside the fixture itself.
        tree.make(Linker::Lld, &["clean"]).ok();
        tree
    }

    /// A copy of `other` as it is now, built files included, in a temp
    /// dir of its own (kept on failure like any tree).
    pub fn copy_of(other: &Tree) -> Tree {
        Tree::copy_from(&other.root, other.format)
    }

    fn copy_from(src: &Path, format: CmdFormat) -> Tree {
        let prefix = format!("{}-", test_name().replace("::", "-"));
        let tmp =
            tempfile::Builder::new().prefix(&prefix).tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("create temp dir");
        let root = tmp.path().join("mini");
        let tree = Tree { tmp: Some(tmp), root, format };
        // cp -a: the tests depend on mtimes (.cmd newer than its object).
        run(Command::new("cp").arg("-a").arg(src).arg(&tree.root)).ok();
        tree
    }

    /// A copy of the fixture built with `make all` and the given linker.
    pub fn build(format: CmdFormat, linker: Linker) -> Tree {
        let tree = Tree::new(format);
        tree.make(linker, &["all"]).ok();
        tree
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Where kdthin-ld puts index files for this tree's links: next to the
    /// tree, so kept ones (failed backends, KDTHIN_SAVE_TEMPS) go away with
    /// the test instead of piling up in /dev/shm.
    pub fn index_tmp(&self) -> PathBuf {
        self.scratch().join("kdthin-tmp")
    }

    /// A directory next to the tree (not inside it) for test helpers.
    pub fn scratch(&self) -> PathBuf {
        self.root.parent().unwrap().to_path_buf()
    }

    /// `make -j2 TARGETS` with the fixture's tools and `LD` set to `linker`.
    pub fn make(&self, linker: Linker, targets: &[&str]) -> Ran {
        self.make_with(linker, targets, &[])
    }

    /// [`Tree::make`] with `envs` added to make's environment (so also to
    /// `$(LD)`'s), e.g. to turn the backend cache on.
    pub fn make_with(&self, linker: Linker, targets: &[&str], envs: &[(&str, &OsStr)]) -> Ran {
        let mut cmd = Command::new("make");
        clean_env(&mut cmd)
            .current_dir(&self.root)
            .env("KDTHIN_TMPDIR", self.index_tmp())
            .args(["-j2", "V=1", &format!("CC={CLANG}"), &format!("AR={AR}")])
            .arg(format!("CMD_PREFIX={}", self.format.prefix()))
            .arg(concat_os("LD=", &linker.program()))
            .args(targets);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        run(&mut cmd)
    }

    /// The argv of one of the fixture's link steps (see LINK_OUTPUTS), as
    /// the Makefile spells it, with `linker` as argv[0].
    pub fn link_argv(&self, target: &str, linker: Linker) -> Vec<OsString> {
        let mut cmd = Command::new("make");
        clean_env(&mut cmd)
            .current_dir(&self.root)
            .env("KDTHIN_TMPDIR", self.index_tmp())
            .args(["-s", "print-link", &format!("LINK={target}")])
            .arg(concat_os("LD=", &linker.program()));
        let printed = run(&mut cmd).ok().stdout;
        let mut words = printed.split_whitespace();
        assert!(words.next().is_some(), "empty link command for {target}");
        std::iter::once(linker.program()).chain(words.map(OsString::from)).collect()
    }

    /// Run one link step directly (not through make), in the tree, with
    /// kbuild's environment plus `envs`.
    pub fn link(&self, target: &str, linker: Linker, envs: &[(&str, &OsStr)]) -> Ran {
        self.run_linker(&self.link_argv(target, linker), envs)
    }

    /// Run `argv` (argv[0] is the linker) in the tree with kbuild's environment.
    pub fn run_linker(&self, argv: &[OsString], envs: &[(&str, &OsStr)]) -> Ran {
        let mut cmd = Command::new(&argv[0]);
        clean_env(&mut cmd).current_dir(&self.root).env("KDTHIN_TMPDIR", self.index_tmp()).args(&argv[1..]);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        run(&mut cmd)
    }

    /// Run the fixture's executable (`prog` or another one) and return its stdout.
    #[track_caller]
    pub fn run_program(&self, rel: &str) -> String {
        run(Command::new(self.path(rel)).current_dir(&self.root)).ok().stdout
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.root)
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).symlink_metadata().is_ok()
    }

    pub fn remove(&self, rel: &str) {
        fs::remove_file(self.path(rel)).unwrap_or_else(|e| panic!("remove {rel}: {e}"));
    }

    pub fn mtime(&self, rel: &str) -> SystemTime {
        fs::metadata(self.path(rel)).and_then(|m| m.modified()).unwrap_or_else(|e| panic!("stat {rel}: {e}"))
    }

    pub fn set_mtime(&self, rel: &str, t: SystemTime) {
        fs::File::options()
            .write(true)
            .open(self.path(rel))
            .and_then(|f| f.set_modified(t))
            .unwrap_or_else(|e| panic!("set mtime of {rel}: {e}"));
    }

    /// Replace a file's contents (its mtime becomes now).
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        fs::write(self.path(rel), contents).unwrap_or_else(|e| panic!("write {rel}: {e}"));
    }

    /// Rewrite a text file through `f` (its mtime becomes now).
    pub fn edit(&self, rel: &str, f: impl FnOnce(&str) -> String) {
        let old = String::from_utf8(self.read(rel)).expect("text file");
        let new = f(&old);
        assert_ne!(old, new, "edit of {rel} changed nothing");
        self.write(rel, new);
    }

    /// Give `obj`'s compile, as its `.cmd` file records it, a flag clang
    /// accepts when parsing but rejects in codegen (`-mcmodel=bogus`): the
    /// backend built from that `.cmd` fails, nothing else does.
    pub fn break_backend_of(&self, obj: &str) {
        self.edit(&Tree::cmd_file(obj), |s| {
            s.replace(&format!(" -c -o {obj} "), &format!(" -mcmodel=bogus -c -o {obj} "))
        });
    }

    /// Rewrite a file through `f`, keeping its mtime, so that neither make
    /// nor a staleness check notices.
    pub fn tamper(&self, rel: &str, f: impl FnOnce(Vec<u8>) -> Vec<u8>) {
        let t = self.mtime(rel);
        let new = f(self.read(rel));
        self.write(rel, new);
        self.set_mtime(rel, t);
    }

    /// `dir/name.o` -> `dir/.name.o.cmd`, as kbuild names it.
    pub fn cmd_file(obj: &str) -> String {
        let (dir, name) = obj.rsplit_once('/').map_or(("", obj), |(d, n)| (d, n));
        if dir.is_empty() {
            format!(".{name}.cmd")
        } else {
            format!("{dir}/.{name}.cmd")
        }
    }

    /// Paths (relative) of everything in the tree whose file name starts
    /// with `.tmp_kdthin`: kdthin-ld's work directories.
    pub fn work_dirs(&self) -> Vec<PathBuf> {
        self.snapshot()
            .paths()
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".tmp_kdthin")))
            .cloned()
            .collect()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(tmp) = self.tmp.take() {
                eprintln!("kept test tree: {}", tmp.keep().join("mini").display());
            }
        }
    }
}

fn concat_os(a: &str, b: &OsStr) -> OsString {
    let mut s = OsString::from(a);
    s.push(b);
    s
}

/// The line a distributed link prints on stdout when it is done:
/// `  LTO     vmlinux.o  8 modules, 7 cached, 0 compiled, 0.3s`.
/// `modules` counts the bitcode modules the link used (lazy archive
/// members it left out need no backend); `cached + compiled` are the
/// backends run; `compiled` may be followed by `(N remote)`: how many of
/// them ran on a remote worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LtoLine {
    pub output: String,
    pub modules: usize,
    pub cached: usize,
    pub compiled: usize,
    pub remote: usize,
    /// `(whole link cached)`: the link memo served the output.
    pub whole_link: bool,
}

impl LtoLine {
    pub fn parse(line: &str) -> Option<LtoLine> {
        let mut w: Vec<&str> = line.split_whitespace().collect();
        let whole_link = w.ends_with(&["(whole", "link", "cached)"]);
        if whole_link {
            w.truncate(w.len() - 3);
        }
        let mut remote = 0;
        if let [.., "compiled", n, "remote),", secs] = w[..] {
            remote = n.strip_prefix('(')?.parse().ok()?;
            w.truncate(w.len() - 4);
            w.extend(["compiled,", secs]);
        }
        let [lto, output, modules, "modules,", cached, "cached,", compiled, "compiled,", secs] = w[..] else {
            return None;
        };
        if lto != "LTO" || !secs.ends_with('s') {
            return None;
        }
        Some(LtoLine {
            output: output.to_string(),
            modules: modules.parse().ok()?,
            cached: cached.parse().ok()?,
            compiled: compiled.parse().ok()?,
            remote,
            whole_link,
        })
    }
}

impl Ran {
    /// The one LTO line for `output` in this command's stdout.
    #[track_caller]
    pub fn lto_line(&self, output: &str) -> LtoLine {
        let lines: Vec<LtoLine> =
            self.stdout.lines().filter_map(LtoLine::parse).filter(|l| l.output == output).collect();
        match &lines[..] {
            [one] => one.clone(),
            _ => panic!("expected one `LTO  {output}  ...` line, found {}\n{}", lines.len(), self.report()),
        }
    }
}

/// `<stem>.thinlto-native.o` next to a bitcode object.
pub fn native_object(obj: &str) -> String {
    format!("{}.thinlto-native.o", obj.strip_suffix(".o").unwrap_or(obj))
}

pub fn is_native_object(p: &Path) -> bool {
    p.to_string_lossy().ends_with(".thinlto-native.o")
}

/// LLVM bitcode, raw (`BC\xC0\xDE`) or in the wrapper (`\xDE\xC0\x17\x0B`).
pub fn is_bitcode(path: &Path) -> bool {
    let head = read_head(path);
    head.starts_with(b"BC\xC0\xDE") || head.starts_with(&[0xDE, 0xC0, 0x17, 0x0B])
}

pub fn is_elf(path: &Path) -> bool {
    read_head(path).starts_with(b"\x7fELF")
}

fn read_head(path: &Path) -> Vec<u8> {
    let mut b = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    b.truncate(4);
    b
}

/// `llvm-nm -P` of `path` with `extra` options: "name type" per symbol,
/// sorted (addresses differ with section layout, so they are left out).
fn nm(path: &Path, extra: &[&str]) -> Vec<String> {
    let ran = run(Command::new(NM).args(extra).arg("-P").arg(path)).ok();
    let mut syms: Vec<String> = ran
        .stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(format!("{} {}", f.next()?, f.next()?))
        })
        .collect();
    syms.sort();
    syms
}

/// Defined global symbols (`llvm-nm --defined-only -g`).
pub fn defined_globals(path: &Path) -> Vec<String> {
    nm(path, &["--defined-only", "-g"])
}

/// Names of undefined symbols.
pub fn undefined_symbols(path: &Path) -> Vec<String> {
    nm(path, &["--undefined-only"]).into_iter().map(|s| s.split(' ').next().unwrap().to_string()).collect()
}

/// Section names of an ELF object.
pub fn section_names(path: &Path) -> Vec<String> {
    let ran = run(Command::new(OBJDUMP).arg("-h").arg(path)).ok();
    ran.stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            f.next()?.parse::<u32>().ok()?;
            f.next().map(str::to_string)
        })
        .collect()
}

/// Assert two lists are equal, showing what is only on either side.
#[track_caller]
pub fn assert_same_lines(what: &str, expected: &[String], actual: &[String]) {
    if expected == actual {
        return;
    }
    let only = |a: &[String], b: &[String]| -> String {
        a.iter().filter(|x| !b.contains(x)).map(|x| format!("    {x}\n")).collect()
    };
    panic!(
        "{what} differ\n  only in reference (ld.lld):\n{}  only in kdthin-ld:\n{}",
        only(expected, actual),
        only(actual, expected)
    );
}

/// What the fixture's vmlinux.o and prog links produced.
#[derive(Debug)]
pub struct LinkResults {
    pub vmlinux_o: Vec<String>,
    pub prog_stdout: String,
}

impl LinkResults {
    pub fn of(tree: &Tree) -> LinkResults {
        LinkResults { vmlinux_o: defined_globals(&tree.path("vmlinux.o")), prog_stdout: tree.run_program("prog") }
    }
}

/// What `prog` prints when every per-object flag took effect: SCALE=3 in
/// kernel/sched.o, the quoted pr_fmt and `$tag #1` defines in mm/slab.o.
pub const PROG_OUTPUT: &str = "\
mini kernel booting
sched: init
slab: init
initcalls = 3
sched_scale(7) = 21
slab_objects(4) = 67
slab tag: $tag #1
ticks = 100
kvm vcpus = 8
";

/// What a successful link may add or rewrite in the tree: a link output,
/// the .cmd file make writes after it, native objects next to bitcode.
pub fn is_link_product(p: &Path) -> bool {
    is_native_object(p) || LINK_OUTPUTS.iter().any(|o| p == Path::new(o) || p == Path::new(&Tree::cmd_file(o)))
}

/// Files kdthin-ld must never leave in the tree (unless told to keep its
/// temporaries): work dirs, ThinLTO index and imports files.
#[track_caller]
pub fn assert_no_litter(tree: &Tree) {
    let litter: Vec<_> = tree
        .snapshot()
        .paths()
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(".tmp_kdthin") || name.ends_with(".thinlto.bc") || name.ends_with(".imports")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(litter.is_empty(), "left in the tree: {litter:?}");
}

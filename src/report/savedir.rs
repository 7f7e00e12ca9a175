//! `KDTHIN_SAVE_DIR=dir`: a reproducer of each link that has bitcode, to
//! attach to a bug report and replay on another machine (wild's
//! `WILD_SAVE_DIR`, adapted to a link that runs other programs).
//!
//! `dir/<output name>.<pid>/` holds:
//! - `tree/`: every file the link reads, at the same place relative to the
//!   link's directory: objects, archives and every thin-archive member,
//!   response files, linker scripts, files named by options, the kbuild
//!   `.cmd` file of each bitcode object (the backends' flags come from it)
//!   and the files its inline assembly reads with `.incbin` (IKCONFIG's
//!   `kernel/config_data.gz`). Modification times are kept: a `.cmd` older
//!   than its object is stale.
//! - `run-with`: `./run-with [kdthin-ld [more arguments...]]` replays the
//!   link in `tree/`, with the environment it had (`CC`, `KDTHIN_*`).
//! - `argv.txt`: the arguments as given, one per line, shell-quoted.
//! - `commands.sh`: the thin-link, every backend and the final link as they
//!   ran, one line each, ready to paste; `$WORK` and `$INDEX` stand for the
//!   temporary directories, whose useful contents are saved in `work/` and
//!   `index/`, so a backend's line runs on its own.
//! - `env.txt`, `versions.txt` (`ld.lld --version`, `clang --version`) and
//!   `outcome.txt` (exit code, or why the link ran in-process).
//! - `.incomplete` until everything is written; it stays if saving failed.
//!
//! Paths: a relative path is copied to the same place under `tree/`. One
//! that climbs out of the link's directory (`../x.o`) makes `tree/` mirror
//! as many parent directories, and the replay runs in `tree/<parent>/<dir>`.
//! An absolute path inside what `tree/` mirrors becomes the relative path;
//! any other one is copied to `.kdthin-abs/<path>` in the replay directory.
//! Both are rewritten in `run-with` and in the copies of response files.
//! Not rewritten, so the replay reads the original file or fails: absolute
//! member names in thin archives, file names inside linker scripts
//! (`INCLUDE`, `INPUT`), `--sysroot` and `--chroot`. Not saved: what
//! `.incbin` reads for a bitcode member of a regular (not thin) archive.
//!
//! Saving never changes the link's outcome: the first error is one warning
//! and the link goes on unsaved from there.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

use crate::args::{rsp, ArgKind, CommandLine, InputRef, OptId};
use crate::exec::shell_quote;
use crate::kbuild::cmd_file_for;
use crate::paths::normalize;
use crate::plan::backend::BackendCommand;
use crate::plan::{DistPlan, Facts, FileFacts};

pub const ENV: &str = "KDTHIN_SAVE_DIR";

/// Marker present while the reproducer is being written.
const INCOMPLETE: &str = ".incomplete";

/// Where absolute paths from outside the mirrored tree go, in the replay
/// directory.
const ABS_DIR: &str = ".kdthin-abs";

/// Recorded in `env.txt` (the ones that can change what a link does).
const RECORDED_ENV: &[&str] =
    &["CC", "KBUILD_VERBOSE", "MAKEFLAGS", "CI", "TERM", "PATH", "XDG_RUNTIME_DIR", "XDG_CACHE_HOME"];

/// Set again by `run-with`: the rest names things on the original machine
/// (make's jobserver, paths) or only decides how things are shown.
fn replayed_env(name: &str) -> bool {
    name == "CC"
        || name == "KBUILD_VERBOSE"
        || (name.starts_with("KDTHIN_")
            // The chain names the kdthin-ld running above this one: a
            // replay that inherited it would think itself a real linker.
            && name != crate::toolchain::CHAIN_VAR
            && !matches!(name, ENV | "KDTHIN_TRACE" | "KDTHIN_REPORT" | "KDTHIN_TMPDIR" | "KDTHIN_CACHE_DIR"))
}

/// Option spellings whose value is a file the link writes, not reads
/// (besides `-Map`).
const WRITES: &[&str] = &[
    "dependency-file",
    "why-extract",
    "print-archive-stats",
    "reproduce",
    "obj-path",
    "index-only",
    "cache-dir",
    "save-temps",
    "time-trace-file",
    "remarks-filename",
    "lto-emit-asm",
];

/// The reproducer of one link; inactive (every call a no-op) unless
/// `KDTHIN_SAVE_DIR` is set. Calls are cheap to make unconditionally.
pub struct SaveDir {
    /// None: not saving (unset, finished, or given up after an error).
    state: Mutex<Option<State>>,
}

struct State {
    /// `dir/<output name>.<pid>`
    root: PathBuf,
    output: PathBuf,
    real_ld: PathBuf,
    /// The link's directory, absolute.
    cwd: PathBuf,
    /// The variables a replay sets.
    env: Vec<(String, OsString)>,
    /// `CC`, for the versions file when no backend ran.
    cc: String,
    map: PathMap,
    /// Destinations already written.
    copied: HashSet<PathBuf>,
    /// (directory, shell variable) for the link's temporary directories,
    /// longest first, as `commands.sh` spells them.
    temp_dirs: Vec<(OsString, &'static str)>,
    backends_seen: bool,
    compilers: BTreeSet<OsString>,
}

impl SaveDir {
    /// Not saving.
    pub fn none() -> SaveDir {
        SaveDir { state: Mutex::new(None) }
    }

    /// Saving this link (a memoised output would leave the copy empty).
    pub fn is_active(&self) -> bool {
        self.state.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    /// From `KDTHIN_SAVE_DIR`: creates `dir/<output name>.<pid>` (a relative
    /// `dir` is taken from the link's directory). Inactive when unset, or
    /// (after a warning) when the directory cannot be made.
    pub fn new(settings: &SaveSettings, output: &Path, real_ld: &Path) -> SaveDir {
        let Some(dir) = &settings.dir else {
            return SaveDir::none();
        };
        match State::create(settings, Path::new(dir), output, real_ld) {
            Ok(st) => SaveDir { state: Mutex::new(Some(st)) },
            Err(e) => {
                warn(output, &e);
                SaveDir::none()
            }
        }
    }

    /// Before the link starts: copy every input and write `run-with`,
    /// `argv.txt` and `env.txt`. `argv` is the original one (without
    /// argv[0]), `cl` and `inputs` its parse, `facts` what each input is.
    pub fn inputs(&self, argv: &[OsString], cl: &CommandLine, inputs: &[InputRef], facts: &Facts) {
        self.with(|st| st.save_inputs(argv, cl, inputs, facts));
    }

    /// The thin-link is about to run (its arguments are `dist.thin_link`).
    pub fn thin_link(&self, dist: &DistPlan) {
        self.with(|st| {
            st.temp_dirs = temp_dirs(dist);
            let mut line = vec![st.real_ld.clone().into_os_string()];
            line.extend(dist.thin_link.iter().cloned());
            st.command("thin-link", &line)
        });
    }

    /// After the thin-link (whatever its result): keep its index and
    /// imports files, its module list and the members it was given from
    /// regular archives.
    pub fn thin_link_outputs(&self, dist: &DistPlan) {
        self.with(|st| st.save_thin_link_outputs(dist));
    }

    /// One backend command, as it runs.
    pub fn backend(&self, command: &BackendCommand) {
        self.with(|st| {
            st.compilers.insert(command.compiler.clone());
            let heading = if st.backends_seen { "" } else { "backends" };
            st.backends_seen = true;
            st.command(heading, &command.argv())
        });
    }

    /// The final link's arguments (without argv[0]), before any response
    /// file wraps them.
    pub fn final_link(&self, args: &[OsString]) {
        self.with(|st| {
            let mut line = vec![st.real_ld.clone().into_os_string()];
            line.extend(args.iter().cloned());
            st.command("final link", &line)
        });
    }

    /// The link is over, or about to be handed to ld.lld in-process:
    /// `outcome` says which (`exit code 1`, `linked in-process: why`).
    /// Writes the versions, removes the `.incomplete` marker and says where
    /// the reproducer is. Later calls do nothing.
    pub fn finish(&self, outcome: &str) {
        self.with(|st| {
            st.finish(outcome)?;
            eprintln!(
                "kdthin-ld: {}: reproducer saved in {} (run-with replays it)",
                st.output.display(),
                st.root.display()
            );
            Ok(())
        });
        if let Ok(mut s) = self.state.lock() {
            *s = None;
        }
    }

    /// Run `f` on the state, if saving. An error or a panic: one warning,
    /// and no more saving.
    fn with(&self, f: impl FnOnce(&mut State) -> Result<()>) {
        let Ok(mut guard) = self.state.lock() else {
            return;
        };
        let Some(st) = guard.as_mut() else { return };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(st)));
        let err = match r {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(_) => anyhow::anyhow!("internal error (panic)"),
        };
        warn(&st.output, &err.context(format!("{} left incomplete", st.root.display())));
        *guard = None;
    }
}

fn warn(output: &Path, e: &anyhow::Error) {
    eprintln!("kdthin-ld: warning: {ENV}: {}: {e:#}; the link goes on", output.display());
}

fn temp_dirs(dist: &DistPlan) -> Vec<(OsString, &'static str)> {
    let mut v = vec![(dist.index_dir.clone().into_os_string(), "INDEX"), (dist.work.clone().into_os_string(), "WORK")];
    // The longer first: the index directory may be inside the work one.
    v.sort_by_key(|(d, _)| std::cmp::Reverse(d.len()));
    v
}

impl State {
    fn create(settings: &SaveSettings, dir: &Path, output: &Path, real_ld: &Path) -> Result<State> {
        let cwd = settings.cwd.clone().context("cannot read the current directory")?;
        let dir = cwd.join(dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        let name = output.file_name().unwrap_or(OsStr::new("a.out")).to_string_lossy().into_owned();
        let pid = std::process::id();
        let mut root = dir.join(format!("{name}.{pid}"));
        // A pid from an earlier build: keep what it saved.
        let mut n = 1;
        loop {
            match std::fs::create_dir(&root) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => {
                    root = dir.join(format!("{name}.{pid}-{n}"));
                    n += 1;
                }
                Err(e) => return Err(e).with_context(|| format!("{}: cannot create", root.display())),
            }
        }
        write(&root.join(INCOMPLETE), "kdthin-ld is still writing this reproducer, or could not finish it.\n")?;
        Ok(State {
            root,
            output: output.to_path_buf(),
            real_ld: real_ld.to_path_buf(),
            cwd,
            env: settings.env.clone(),
            cc: settings.cc.clone(),
            map: PathMap::default(),
            copied: HashSet::new(),
            temp_dirs: Vec::new(),
            backends_seen: false,
            compilers: BTreeSet::new(),
        })
    }

    fn tree(&self) -> PathBuf {
        self.root.join("tree")
    }

    fn save_inputs(&mut self, argv: &[OsString], cl: &CommandLine, inputs: &[InputRef], facts: &Facts) -> Result<()> {
        let mut files = files_read(cl, inputs, facts);
        // The backend's assembler reads these from the link's directory.
        for b in bitcode_objects(inputs, facts) {
            files.extend(crate::cache::incbin_files(&b).unwrap_or_default());
        }
        let rsps: Vec<PathBuf> = cl.rsp_files.iter().map(|r| r.path.clone()).collect();
        let lib_dirs: Vec<PathBuf> = cl.values_of(OptId::LibraryPath).map(PathBuf::from).collect();
        let output = cl.value_of(OptId::Output).map(PathBuf::from);

        let all: Vec<&Path> =
            files.iter().chain(&rsps).chain(&lib_dirs).chain(output.as_ref()).map(PathBuf::as_path).collect();
        self.map = PathMap::new(&self.cwd, &all);
        let tree = self.tree();
        std::fs::create_dir_all(tree.join(&self.map.sub))
            .with_context(|| format!("{}: cannot create", tree.display()))?;

        for f in &files {
            self.copy(f)?;
        }
        for d in lib_dirs.iter().map(PathBuf::as_path).chain(output.as_ref().and_then(|o| o.parent())) {
            let dest = tree.join(self.map.place(&self.cwd, d));
            std::fs::create_dir_all(&dest).with_context(|| format!("{}: cannot create", dest.display()))?;
        }
        if let Some(o) = &output {
            self.map.place(&self.cwd, o);
        }
        // Response files last: rewriting them needs every rename known.
        let windows_quoting = cl.value_of(OptId::RspQuoting).is_some_and(|v| v != "posix");
        for r in &rsps {
            self.copy_rsp(r, windows_quoting)?;
        }

        let mut argv_txt = String::new();
        for a in argv {
            argv_txt.push_str(&q(a));
            argv_txt.push('\n');
        }
        write(&self.root.join("argv.txt"), &argv_txt)?;
        let replay: Vec<OsString> = argv.iter().map(|a| self.map.rewrite(a)).collect();
        let env = &self.env;
        write_exec(&self.root.join("run-with"), &run_with(&self.cwd, &self.map.sub, &self.output, env, &replay))?;
        let mut env_txt = String::from("# The environment of the original link (see run-with for what it sets).\n");
        for (k, v) in env {
            env_txt.push_str(&format!("{k}={}\n", q(v)));
        }
        write(&self.root.join("env.txt"), &env_txt)?;
        write(&self.root.join("commands.sh"), &commands_header(&self.map.sub))?;
        Ok(())
    }

    /// Copy a file the link reads (silently skipped if it is not a
    /// regular file: ld.lld will have its say about that).
    fn copy(&mut self, p: &Path) -> Result<()> {
        if !std::fs::metadata(p).is_ok_and(|m| m.is_file()) {
            return Ok(());
        }
        let dest = self.tree().join(self.map.place(&self.cwd, p));
        if self.copied.insert(dest.clone()) {
            copy_file(p, &dest)?;
        }
        Ok(())
    }

    /// A response file, its tokens rewritten if one names a renamed path.
    fn copy_rsp(&mut self, p: &Path, windows_quoting: bool) -> Result<()> {
        let Ok(bytes) = std::fs::read(p) else {
            return Ok(());
        };
        let dest = self.tree().join(self.map.place(&self.cwd, p));
        if !self.copied.insert(dest.clone()) {
            return Ok(());
        }
        let tokens = rsp::tokenize_gnu(&bytes);
        let rewritten: Vec<OsString> = tokens.iter().map(|t| self.map.rewrite(t)).collect();
        if windows_quoting || rewritten == tokens {
            return copy_file(p, &dest);
        }
        write(&dest, &rsp::write_rsp(&rewritten))
    }

    fn save_thin_link_outputs(&mut self, dist: &DistPlan) -> Result<()> {
        if self.temp_dirs.is_empty() {
            self.temp_dirs = temp_dirs(dist);
        }
        let mut files: Vec<&Path> = vec![&dist.list_file];
        for m in &dist.modules {
            files.extend([m.index.as_path(), m.imports.as_path()]);
        }
        files.extend(dist.extract.iter().map(|(_, _, dest)| dest.as_path()));
        for f in files {
            let Some(dest) = self.temp_dest(f) else {
                continue;
            };
            if std::fs::metadata(f).is_ok_and(|m| m.is_file()) && self.copied.insert(dest.clone()) {
                copy_file(f, &dest)?;
            }
        }
        Ok(())
    }

    /// `index/...` or `work/...` for a file in a temporary directory.
    fn temp_dest(&self, f: &Path) -> Option<PathBuf> {
        let f = normalize(f);
        self.temp_dirs.iter().find_map(|(dir, var)| {
            let rel = f.strip_prefix(normalize(Path::new(dir))).ok()?;
            Some(self.root.join(var.to_ascii_lowercase()).join(rel))
        })
    }

    /// Append one command to `commands.sh`, under `heading` if not empty.
    fn command(&mut self, heading: &str, argv: &[OsString]) -> Result<()> {
        let mut line = String::new();
        if !heading.is_empty() {
            line.push_str(&format!("\n# {heading}\n"));
        }
        let vars: Vec<(&[u8], &str)> = self.temp_dirs.iter().map(|(d, v)| (d.as_bytes(), *v)).collect();
        for (i, a) in argv.iter().enumerate() {
            if i > 0 {
                line.push(' ');
            }
            line.push_str(&quote_with_vars(&self.map.rewrite(a), &vars));
        }
        line.push('\n');
        let path = self.root.join("commands.sh");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        f.write_all(line.as_bytes()).with_context(|| format!("{}: cannot write", path.display()))
    }

    fn finish(&mut self, outcome: &str) -> Result<()> {
        let mut v = format!("kdthin-ld {}\n", env!("CARGO_PKG_VERSION"));
        let mut tools: Vec<OsString> = vec![self.real_ld.clone().into_os_string()];
        tools.extend(self.compilers.iter().cloned());
        if self.compilers.is_empty() {
            // No backend ran: the compiler kbuild uses.
            let clang =
                self.cc.split_whitespace().find(|w| w.rsplit('/').next().is_some_and(|n| n.starts_with("clang")));
            tools.push(clang.unwrap_or("clang").into());
        }
        for t in &tools {
            v.push_str(&format!("\n$ {} --version\n", q(t)));
            match crate::exec::signals::output(std::process::Command::new(t).arg("--version")) {
                Ok(out) => {
                    v.push_str(&String::from_utf8_lossy(&out.stdout));
                    v.push_str(&String::from_utf8_lossy(&out.stderr));
                }
                Err(e) => v.push_str(&format!("cannot run: {e}\n")),
            }
        }
        write(&self.root.join("versions.txt"), &v)?;
        write(&self.root.join("outcome.txt"), &format!("{outcome}\n"))?;
        let marker = self.root.join(INCOMPLETE);
        std::fs::remove_file(&marker).with_context(|| format!("{}: cannot remove", marker.display()))
    }
}

/// Every file the link reads, as it names them (response files aside):
/// inputs and scripts, thin-archive members, the `.cmd` file of each
/// bitcode object (and, for a regular archive's bitcode member, the object
/// beside the archive whose `.cmd` describes it), files named by options.
fn files_read(cl: &CommandLine, inputs: &[InputRef], facts: &Facts) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for i in inputs {
        out.push(i.path.clone());
        match facts.get(&i.path) {
            Some(FileFacts::Plain(k)) if k.is_bitcode() => out.push(cmd_file_for(&i.path)),
            Some(FileFacts::Archive(a)) => {
                for m in &a.members {
                    match &m.path {
                        Some(p) => {
                            out.push(p.clone());
                            if m.kind.is_bitcode() {
                                out.push(cmd_file_for(p));
                            }
                        }
                        None if m.kind.is_bitcode() => {
                            let obj = a.path.with_file_name(&m.name);
                            out.push(cmd_file_for(&obj));
                            out.push(obj);
                        }
                        None => {}
                    }
                }
            }
            _ => {}
        }
    }
    for a in &cl.args {
        let value = match &a.kind {
            ArgKind::Opt {
                id: OptId::Output | OptId::LibraryPath | OptId::Library | OptId::Script | OptId::DefaultScript,
                ..
            } => None,
            ArgKind::Opt { value, .. } => value.clone(),
            ArgKind::Unknown => a.tokens[0].to_str().and_then(|t| t.split_once('=')).map(|(_, v)| v.into()),
            ArgKind::Input(_) => None,
        };
        let spelling = a.tokens[0].to_string_lossy().to_ascii_lowercase();
        let name = spelling.trim_start_matches('-');
        let writes = name.starts_with("map") || WRITES.iter().any(|w| name.contains(w));
        if let Some(v) = value.filter(|_| !writes) {
            if Path::new(&v).is_file() {
                out.push(PathBuf::from(v));
            }
        }
    }
    out
}

/// Bitcode files the link reads as files (inputs, thin-archive members).
fn bitcode_objects(inputs: &[InputRef], facts: &Facts) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for i in inputs {
        match facts.get(&i.path) {
            Some(FileFacts::Plain(k)) if k.is_bitcode() => out.push(i.path.clone()),
            Some(FileFacts::Archive(a)) => {
                out.extend(a.members.iter().filter(|m| m.kind.is_bitcode()).filter_map(|m| m.path.clone()))
            }
            _ => {}
        }
    }
    out.retain(|p| seen.insert(p.clone()));
    out
}

/// Where paths go under `tree/`, and which ones the replay must call by
/// another name.
#[derive(Debug, Default)]
struct PathMap {
    /// The link's directory, relative to `tree/`: empty unless paths climb
    /// out of it (`../x.o`), then its last components.
    sub: PathBuf,
    /// What `tree/` stands for: the link's directory without `sub`.
    base: PathBuf,
    /// Paths as spelled in the link -> their name in the replay.
    renames: HashMap<OsString, OsString>,
}

impl PathMap {
    fn new(cwd: &Path, paths: &[&Path]) -> PathMap {
        let comps: Vec<Component> = cwd.components().collect();
        let depth = comps.iter().filter(|c| matches!(c, Component::Normal(_))).count();
        let ups = paths
            .iter()
            .filter(|p| p.is_relative())
            .map(|p| normalize(p).components().take_while(|c| *c == Component::ParentDir).count())
            .filter(|&u| u <= depth)
            .max()
            .unwrap_or(0);
        let split = comps.len() - ups;
        PathMap { base: comps[..split].iter().collect(), sub: comps[split..].iter().collect(), renames: HashMap::new() }
    }

    /// Where `p` goes, relative to `tree/`; records a rename when the
    /// replay must call it otherwise.
    fn place(&mut self, cwd: &Path, p: &Path) -> PathBuf {
        if p.is_relative() {
            let n = normalize(&self.sub.join(p));
            if n.components().next() != Some(Component::ParentDir) {
                return n;
            }
        }
        let abs = normalize(&cwd.join(p));
        let (dest, replay) = match abs.strip_prefix(&self.base) {
            Ok(r) => (r.to_path_buf(), relative_from(&self.sub, r)),
            Err(_) => {
                let inside = Path::new(ABS_DIR).join(abs.strip_prefix("/").unwrap_or(&abs));
                (self.sub.join(&inside), inside)
            }
        };
        self.renames.insert(p.as_os_str().to_os_string(), replay.clone().into_os_string());
        self.renames.insert(abs.into_os_string(), replay.into_os_string());
        dest
    }

    /// A token with a renamed path in it renamed: the path itself,
    /// `@path`, `-Xpath` and `--opt=path`.
    fn rewrite(&self, tok: &OsStr) -> OsString {
        if self.renames.is_empty() {
            return tok.to_os_string();
        }
        let b = tok.as_bytes();
        let mut splits = vec![0];
        if b.first() == Some(&b'@') {
            splits.push(1);
        }
        if b.first() == Some(&b'-') {
            if b.len() > 2 && b[1] != b'-' {
                splits.push(2);
            }
            if let Some(eq) = b.iter().position(|&c| c == b'=') {
                splits.push(eq + 1);
            }
        }
        for at in splits {
            if let Some(r) = self.renames.get(OsStr::from_bytes(&b[at..])) {
                let mut out = OsStr::from_bytes(&b[..at]).to_os_string();
                out.push(r);
                return out;
            }
        }
        tok.to_os_string()
    }
}

/// The relative path from directory `from` to `to` (both relative to the
/// same place, without `..`).
fn relative_from(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<Component> = from.components().collect();
    let t: Vec<Component> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    out.extend(&t[common..]);
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn q(s: &OsStr) -> String {
    shell_quote(&[s.to_os_string()])
}

/// Quote a token for the shell with every occurrence of a directory in
/// `vars` replaced by `"$VAR"`.
fn quote_with_vars(tok: &OsStr, vars: &[(&[u8], &str)]) -> String {
    let b = tok.as_bytes();
    let mut out = String::new();
    let mut lit_start = 0;
    let mut i = 0;
    while i < b.len() {
        let hit = vars.iter().find(|(d, _)| {
            !d.is_empty()
                && b[i..].starts_with(d)
                // A whole directory name, not the start of a longer one.
                && matches!(b.get(i + d.len()), None | Some(b'/'))
        });
        match hit {
            Some((d, var)) => {
                if i > lit_start {
                    out.push_str(&q(OsStr::from_bytes(&b[lit_start..i])));
                }
                out.push_str(&format!("\"${var}\""));
                i += d.len();
                lit_start = i;
            }
            None => i += 1,
        }
    }
    if lit_start < b.len() || out.is_empty() {
        out.push_str(&q(OsStr::from_bytes(&b[lit_start..])));
    }
    out
}

/// `KDTHIN_SAVE_DIR` and what a reproducer records.
#[derive(Clone, Debug, Default)]
pub struct SaveSettings {
    pub dir: Option<OsString>,
    /// The variables a replay sets, sorted.
    pub env: Vec<(String, OsString)>,
    /// `CC`: the compiler whose version a reproducer records when no
    /// backend ran.
    pub cc: String,
    /// The link's directory, which a relative `dir` is taken from.
    pub cwd: Option<PathBuf>,
}

impl SaveSettings {
    pub fn from_env(env: &crate::env::Env) -> SaveSettings {
        SaveSettings {
            dir: env.nonempty(ENV).map(|d| d.to_os_string()),
            env: recorded_env(env),
            cc: env.str("CC").unwrap_or_default().to_string(),
            cwd: env.cwd.clone(),
        }
    }
}

/// `CC`, `KDTHIN_*` (but this one) and the few others that matter, sorted.
fn recorded_env(env: &crate::env::Env) -> Vec<(String, OsString)> {
    let mut v: Vec<(String, OsString)> = env
        .vars()
        .filter_map(|(k, val)| {
            let k = k.to_str()?.to_string();
            let val = val.to_os_string();
            let keep = (k.starts_with("KDTHIN_") && k != ENV && k != crate::toolchain::CHAIN_VAR)
                || RECORDED_ENV.contains(&k.as_str());
            keep.then_some((k, val))
        })
        .collect();
    v.sort();
    v
}

fn run_with(cwd: &Path, sub: &Path, output: &Path, env: &[(String, OsString)], argv: &[OsString]) -> String {
    let mut s = String::from("#!/bin/sh\n");
    s.push_str(&format!(
        "# Replays the link of {} that kdthin-ld {} saved ({ENV}):\n",
        output.display(),
        env!("CARGO_PKG_VERSION")
    ));
    s.push_str(
        "#\n\
         #   ./run-with [path/to/kdthin-ld [more linker arguments...]]\n\
         #\n\
         # It runs in tree/ (which stands for the original directory below) and\n\
         # writes its output there. clang and ld.lld are found as in the original\n\
         # link: see env.txt and versions.txt. A variable set below keeps the\n\
         # value the caller gives it (KDTHIN_VERBOSE=1 ./run-with ...).\n",
    );
    s.push_str(&format!("# Original directory: {}\n\n", cwd.display()));
    s.push_str("ld=${1:-kdthin-ld}\n[ $# -gt 0 ] && shift\n");
    s.push_str("case $ld in */*) ld=$(cd \"$(dirname \"$ld\")\" && pwd)/$(basename \"$ld\") || exit ;; esac\n");
    s.push_str("here=$(cd \"$(dirname \"$0\")\" && pwd) || exit\n");
    s.push_str(&format!("cd \"$here\"/{} || exit\n\n", q(replay_dir(sub).as_os_str())));
    for (k, v) in env {
        if replayed_env(k) {
            s.push_str(&format!("[ \"${{{k}+set}}\" = set ] || {k}={}; export {k}\n", q(v)));
        } else if k.starts_with("KDTHIN_") {
            s.push_str(&format!("# Not set (names a place on the original machine): {k}={}\n", q(v)));
        }
    }
    s.push_str("\nexec \"$ld\"");
    for a in argv {
        s.push_str(" \\\n  ");
        s.push_str(&q(a));
    }
    s.push_str(" \\\n  \"$@\"\n");
    s
}

fn commands_header(sub: &Path) -> String {
    format!(
        "#!/bin/sh\n\
         # The commands kdthin-ld ran for this link, in order, one per line, to\n\
         # paste. $WORK and $INDEX stand for its temporary directories, whose\n\
         # thin-link outputs are saved in work/ and index/: a backend's line\n\
         # runs on its own. The final link also needs the thin archives that\n\
         # kdthin-ld writes itself: to replay the whole link, use run-with.\n\
         here=$(cd \"$(dirname \"$0\")\" && pwd)\n\
         WORK=\"$here/work\" INDEX=\"$here/index\"\n\
         mkdir -p \"$WORK/native\" \"$INDEX\"\n\
         cd \"$here\"/{} || exit\n",
        q(replay_dir(sub).as_os_str())
    )
}

/// Where the link runs, relative to the reproducer: `tree` or `tree/<sub>`.
fn replay_dir(sub: &Path) -> PathBuf {
    if sub.as_os_str().is_empty() {
        PathBuf::from("tree")
    } else {
        Path::new("tree").join(sub)
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("{}: cannot create", d.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
}

fn write_exec(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("{}: cannot make executable", path.display()))
}

/// Copy contents, permissions and modification time (kbuild's `.cmd`
/// check compares it with the object's, to the nanosecond). Never a hard
/// link: make rewrites some files in place, which would change the copy.
fn copy_file(src: &Path, dest: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if let Some(d) = dest.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("{}: cannot create", d.display()))?;
    }
    std::fs::copy(src, dest).with_context(|| format!("cannot copy {} to {}", src.display(), dest.display()))?;
    let md = std::fs::metadata(src).with_context(|| format!("{}: cannot stat", src.display()))?;
    let times = [
        libc::timespec { tv_sec: md.atime() as _, tv_nsec: md.atime_nsec() as _ },
        libc::timespec { tv_sec: md.mtime() as _, tv_nsec: md.mtime_nsec() as _ },
    ];
    let c = std::ffi::CString::new(dest.as_os_str().as_bytes())?;
    // SAFETY: a valid C string and two timespecs that outlive the call.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(e).with_context(|| format!("{}: cannot set the modification time", dest.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(cwd: &str, paths: &[&str]) -> PathMap {
        let p: Vec<&Path> = paths.iter().map(Path::new).collect();
        PathMap::new(Path::new(cwd), &p)
    }

    #[test]
    fn relative_paths_stay_where_they_are() {
        let cwd = Path::new("/src/linux");
        let mut m = map("/src/linux", &["vmlinux.a", "init/main.o", "./a/../lib/lib.a"]);
        assert_eq!(m.sub, PathBuf::new());
        assert_eq!(m.place(cwd, Path::new("init/main.o")), PathBuf::from("init/main.o"));
        assert_eq!(m.place(cwd, Path::new("./a/../lib/lib.a")), PathBuf::from("lib/lib.a"));
        assert!(m.renames.is_empty());
        assert_eq!(m.rewrite(OsStr::new("init/main.o")), "init/main.o");
    }

    #[test]
    fn climbing_out_mirrors_parent_directories() {
        let cwd = Path::new("/src/linux/out");
        let mut m = map("/src/linux/out", &["../../x.o", "../y.o", "z.o"]);
        assert_eq!(m.sub, PathBuf::from("linux/out"));
        assert_eq!(m.base, PathBuf::from("/src"));
        assert_eq!(m.place(cwd, Path::new("../../x.o")), PathBuf::from("x.o"));
        assert_eq!(m.place(cwd, Path::new("../y.o")), PathBuf::from("linux/y.o"));
        assert_eq!(m.place(cwd, Path::new("z.o")), PathBuf::from("linux/out/z.o"));
        assert!(m.renames.is_empty());
        // An absolute path inside the mirrored tree becomes relative.
        assert_eq!(m.place(cwd, Path::new("/src/linux/lib/l.a")), PathBuf::from("linux/lib/l.a"));
        assert_eq!(m.rewrite(OsStr::new("/src/linux/lib/l.a")), "../lib/l.a");
        assert_eq!(m.rewrite(OsStr::new("/src/linux/out/z.o")), "/src/linux/out/z.o", "not placed: unchanged");
    }

    #[test]
    fn absolute_paths_outside_are_relocated_and_rewritten() {
        let cwd = Path::new("/src/linux");
        let mut m = map("/src/linux", &["a.o"]);
        assert_eq!(m.place(cwd, Path::new("/opt/x/k.lds")), PathBuf::from(".kdthin-abs/opt/x/k.lds"));
        assert_eq!(m.place(cwd, Path::new("/src/linux/init/main.o")), PathBuf::from("init/main.o"));
        assert_eq!(m.place(cwd, Path::new("/opt/lib")), PathBuf::from(".kdthin-abs/opt/lib"));
        let rw = |s: &str| m.rewrite(OsStr::new(s)).into_string().unwrap();
        assert_eq!(rw("/opt/x/k.lds"), ".kdthin-abs/opt/x/k.lds");
        assert_eq!(rw("-T/opt/x/k.lds"), "-T.kdthin-abs/opt/x/k.lds");
        assert_eq!(rw("--script=/opt/x/k.lds"), "--script=.kdthin-abs/opt/x/k.lds");
        assert_eq!(rw("@/opt/x/k.lds"), "@.kdthin-abs/opt/x/k.lds");
        assert_eq!(rw("-L/opt/lib"), "-L.kdthin-abs/opt/lib");
        assert_eq!(rw("/src/linux/init/main.o"), "init/main.o");
        assert_eq!(rw("/opt/x/k.lds.other"), "/opt/x/k.lds.other");
        assert_eq!(rw("-o"), "-o");
    }

    #[test]
    fn relative_from_climbs_as_needed() {
        assert_eq!(relative_from(Path::new(""), Path::new("a/b")), PathBuf::from("a/b"));
        assert_eq!(relative_from(Path::new("x/y"), Path::new("x/z/f")), PathBuf::from("../z/f"));
        assert_eq!(relative_from(Path::new("x/y"), Path::new("x/y")), PathBuf::from("."));
    }

    #[test]
    fn temporary_directories_become_variables() {
        let vars: Vec<(&[u8], &str)> = vec![(b"/dev/shm/kdthin.v.1", "INDEX"), (b".tmp_kdthin.v.1", "WORK")];
        let v = |s: &str| quote_with_vars(OsStr::new(s), &vars);
        assert_eq!(
            v("-fthinlto-index=/dev/shm/kdthin.v.1/init/main.o.thinlto.bc"),
            "-fthinlto-index=\"$INDEX\"/init/main.o.thinlto.bc"
        );
        assert_eq!(v("--thinlto-prefix-replace=;/dev/shm/kdthin.v.1/"), "'--thinlto-prefix-replace=;'\"$INDEX\"/");
        assert_eq!(v(".tmp_kdthin.v.1/native/3.o"), "\"$WORK\"/native/3.o");
        assert_eq!(v(".tmp_kdthin.v.1"), "\"$WORK\"");
        assert_eq!(v(".tmp_kdthin.v.12/x"), ".tmp_kdthin.v.12/x", "another directory");
        assert_eq!(v("it's"), "'it'\\''s'");
        assert_eq!(v(""), "''");
    }

    #[test]
    fn replayed_environment() {
        assert!(replayed_env("CC"));
        assert!(replayed_env("KDTHIN_JOBS"));
        assert!(replayed_env("KDTHIN_CACHE"));
        assert!(!replayed_env("KDTHIN_SAVE_DIR"));
        assert!(!replayed_env("KDTHIN_TRACE"));
        assert!(!replayed_env("MAKEFLAGS"));
    }

    #[test]
    fn run_with_quotes_and_passes_extra_arguments() {
        let s = run_with(
            Path::new("/src/linux"),
            Path::new(""),
            Path::new("vmlinux.o"),
            &[("CC".into(), "clang-22".into()), ("KDTHIN_TRACE".into(), "/t".into())],
            &["-o".into(), "vmlinux.o".into(), "it's".into()],
        );
        assert!(s.contains("[ \"${CC+set}\" = set ] || CC=clang-22; export CC\n"), "{s}");
        assert!(s.contains("# Not set (names a place on the original machine): KDTHIN_TRACE=/t\n"), "{s}");
        assert!(s.contains("cd \"$here\"/tree || exit\n"), "{s}");
        assert!(s.ends_with("exec \"$ld\" \\\n  -o \\\n  vmlinux.o \\\n  'it'\\''s' \\\n  \"$@\"\n"), "{s}");
    }
}

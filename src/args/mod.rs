//! A lossless model of the ld.lld command line.
//!
//! `CommandLine::parse` expands response files (GNU quoting, nested) and
//! classifies every token with the option table in [`table`]. Every parsed
//! argument keeps its original spelling, so `render()` gives back the exact
//! argv, and edits (replace one input, drop an option) change only what they
//! touch. Options the table does not know are passed on untouched.
//!
//! What lld does that this copies (checked against ld.lld 22):
//! - argv is split into options by lld's own table, longest match first:
//!   `-output` is `-o utput`, `-lto-O2` is `-l to-O2`;
//! - `-plugin-opt X` is read as `-plugin-opt=X`, after response files are
//!   expanded (lld's concatLTOPluginOptions), so it is one [`Arg`] of two
//!   tokens, which may even come from different response files;
//! - `-L`, `--sysroot`, `-r` and `--chroot` apply wherever they appear;
//!   `--whole-archive`, `--as-needed`, `-Bstatic` and friends apply to what
//!   follows them (see [`CommandLine::inputs`]).

pub mod rsp;
pub mod table;

#[cfg(test)]
mod lld_check;

use std::ffi::{OsStr, OsString};
use std::ops::Range;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

pub use table::{lookup, Lookup, OptId, OptInfo, OptKind};

/// One argument as the user wrote it: one token (`-ofoo`, `--script=x`,
/// `foo.o`) or two (`-o foo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    /// Original tokens, exactly as spelled.
    pub tokens: Vec<OsString>,
    pub kind: ArgKind,
    /// Index into `CommandLine::rsp_files` of the response file this came
    /// from (innermost, of its first token), or None for the process argv.
    pub from_rsp: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// A positional input file (object, archive, linker script, ...), or
    /// `-` for stdin.
    Input(PathBuf),
    /// A known option. `value` is its value with the spelling stripped
    /// (`-ofoo` -> `foo`, `--script=x` -> `x`; for `PluginOpt`, all that
    /// follows `plugin-opt=`: `-plugin-opt O2` -> `O2`).
    Opt { id: OptId, value: Option<OsString> },
    /// Starts with `-` but is not in the table: passed on untouched.
    Unknown,
}

/// A response file that was expanded while parsing. An `@name` whose file
/// does not exist is not listed: like GNU ld and lld, it stays a literal
/// argument (an input named `@name`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RspFile {
    /// The `@...` token as spelled.
    pub token: OsString,
    /// The path it was read from.
    pub path: PathBuf,
    /// Parent response file, if nested.
    pub parent: Option<usize>,
    /// The tokens it expanded to (nested files included), as indices into
    /// the expanded argv: the tokens of `CommandLine::args`, in order.
    pub span: Range<usize>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandLine {
    pub args: Vec<Arg>,
    pub rsp_files: Vec<RspFile>,
}

/// Position-dependent state in force at an input (lld's semantics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PosState {
    pub whole_archive: bool,
    pub as_needed: bool,
    pub is_static: bool,
    /// Inside --start-group/--end-group: which group, counting from 0.
    pub group: Option<u32>,
    /// Inside --start-lib/--end-lib.
    pub in_lib: bool,
    /// After `--format=binary` (`-b binary`): the file is raw data to embed,
    /// not an object.
    pub binary: bool,
}

/// A file input and where it sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputRef {
    /// Index into `CommandLine::args`.
    pub arg_index: usize,
    /// Path as lld opens it: relative paths are relative to lld's current
    /// directory; for `-l` and `-T`, the file found on the search path.
    pub path: PathBuf,
    pub state: PosState,
    /// True for `-T`/`--script` and `--default-script` linker scripts. A
    /// positional input may be a script too; only its contents tell.
    pub is_script: bool,
}

impl Arg {
    /// The table entry this argument matched, e.g. to tell
    /// `--thinlto-jobs=` from `--thinlto-cache-dir=` (both `Other`). None
    /// for inputs and unknown options.
    pub fn opt_info(&self) -> Option<&'static OptInfo> {
        if !matches!(self.kind, ArgKind::Opt { .. }) {
            return None;
        }
        let (first, next) = (&self.tokens[0], self.tokens.get(1));
        match glue_plugin_opt(first, next.map(|t| t.as_os_str())) {
            Some(glued) => lookup_info(&glued, None),
            None => lookup_info(first, next.map(|t| t.as_os_str())),
        }
    }
}

fn lookup_info(tok: &OsStr, next: Option<&OsStr>) -> Option<&'static OptInfo> {
    match lookup(tok, next) {
        Lookup::Opt { info, .. } => Some(info),
        _ => None,
    }
}

/// lld reads `-plugin-opt X` as `-plugin-opt=X` (as gold's plugin does).
fn glue_plugin_opt(tok: &OsStr, next: Option<&OsStr>) -> Option<OsString> {
    let next = next?;
    if tok != "-plugin-opt" && tok != "--plugin-opt" {
        return None;
    }
    let mut glued = tok.to_os_string();
    glued.push("=");
    glued.push(next);
    Some(glued)
}

impl CommandLine {
    /// Parse argv (without `argv[0]`). Response files are read relative to
    /// the current directory, as ld.lld does. Fails where lld would fail
    /// before linking: an option missing its value, an unreadable or
    /// recursive response file.
    pub fn parse(argv: &[OsString]) -> Result<CommandLine> {
        Self::parse_in(argv, Path::new(""))
    }

    /// Like `parse`, as if run in `cwd` (relative `@file` names are read
    /// from there).
    pub fn parse_in(argv: &[OsString], cwd: &Path) -> Result<CommandLine> {
        // Like lld, take the quoting style from argv before expanding it.
        let windows_quoting = last_value(argv, OptId::RspQuoting).is_some_and(|v| v != "posix");
        let expanded = rsp::expand(argv, cwd, windows_quoting)?;
        let (tokens, origin) = (&expanded.tokens, &expanded.origin);

        let mut args = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let (tok, next) = (&tokens[i], tokens.get(i + 1).map(|t| t.as_os_str()));
            let (len, kind) = match glue_plugin_opt(tok, next) {
                Some(glued) => (2, classify(lookup(&glued, None), tok)?.1),
                None => classify(lookup(tok, next), tok)?,
            };
            args.push(Arg { tokens: tokens[i..i + len].to_vec(), kind, from_rsp: origin[i] });
            i += len;
        }
        Ok(CommandLine { args, rsp_files: expanded.files })
    }

    /// The original argv, byte for byte (response files as `@file`).
    /// Meant for the command line as parsed: to change arguments, use
    /// `render_flat`.
    pub fn render(&self) -> Vec<OsString> {
        let mut tops = self.rsp_files.iter().filter(|f| f.parent.is_none()).peekable();
        let tokens: Vec<&OsString> = self.args.iter().flat_map(|a| &a.tokens).collect();
        let mut out = Vec::new();
        // Tokens before this index that came from a top-level response file
        // are represented by its `@file` token.
        let mut covered = 0;
        // One step past the end, for response files that expanded to nothing.
        for i in 0..=tokens.len() {
            while let Some(file) = tops.next_if(|f| f.span.start == i) {
                out.push(file.token.clone());
                covered = covered.max(file.span.end);
            }
            if let Some(tok) = tokens.get(i).filter(|_| i >= covered) {
                out.push((*tok).clone());
            }
        }
        out
    }

    /// The argv with response files expanded, each arg replaced by what
    /// `edit` returns (None = keep as spelled, Some(vec) = these tokens).
    pub fn render_flat(&self, edit: &mut dyn FnMut(usize, &Arg) -> Option<Vec<OsString>>) -> Vec<OsString> {
        let mut out = Vec::new();
        for (i, arg) in self.args.iter().enumerate() {
            match edit(i, arg) {
                Some(tokens) => out.extend(tokens),
                None => out.extend(arg.tokens.iter().cloned()),
            }
        }
        out
    }

    /// Value of an option; the last one if it is given more than once
    /// (lld's rule for single-valued options like `-o`).
    pub fn value_of(&self, id: OptId) -> Option<&OsStr> {
        self.values_of(id).last()
    }

    /// All values of an option, in order (e.g. every `-mllvm`).
    pub fn values_of(&self, id: OptId) -> impl Iterator<Item = &OsStr> {
        self.args.iter().filter_map(move |a| match &a.kind {
            ArgKind::Opt { id: i, value } if *i == id => value.as_deref(),
            _ => None,
        })
    }

    pub fn has(&self, id: OptId) -> bool {
        self.args.iter().any(|a| matches!(&a.kind, ArgKind::Opt { id: i, .. } if *i == id))
    }

    /// All file inputs in order with the state in force at each. `-l` is
    /// resolved against `-L` dirs (and `--sysroot`) like ld.lld does, and
    /// `-T` looked up in the current directory, then the `-L` dirs (if it is
    /// in neither, it is returned as spelled and lld will complain). Fails
    /// with lld's message where lld would (library not found, stray
    /// `--end-group`, unbalanced `--pop-state`, ...). Inputs are not read.
    pub fn inputs(&self) -> Result<Vec<InputRef>> {
        self.inputs_in(Path::new(""))
    }

    /// Like `inputs`, as if run in `cwd`: files are looked for there, but
    /// the paths returned stay as lld would spell them.
    pub fn inputs_in(&self, cwd: &Path) -> Result<Vec<InputRef>> {
        let search = Search {
            cwd,
            dirs: self.values_of(OptId::LibraryPath).collect(),
            sysroot: self.value_of(OptId::Sysroot).unwrap_or_default(),
        };
        let chroot = self.value_of(OptId::Chroot);
        // `-r` implies -Bstatic and beats -Bdynamic wherever it is.
        let relocatable = self.has(OptId::Relocatable);
        let mut state = PosState { is_static: relocatable, ..PosState::default() };
        let mut pushed = Vec::new();
        // lld's isInGroup: set by --start-group and by --start-lib.
        let mut in_group = false;
        let mut groups = 0;

        let mut out = Vec::new();
        let mut add = |arg_index, path: PathBuf, state, is_script| {
            // lld's --chroot (for replaying --reproduce tarballs).
            let path = match chroot {
                Some(root) if path.is_absolute() => {
                    let mut p = root.to_os_string();
                    p.push(path.as_os_str());
                    PathBuf::from(p)
                }
                _ => path,
            };
            out.push(InputRef { arg_index, path, state, is_script });
        };
        for (i, arg) in self.args.iter().enumerate() {
            let (id, value) = match &arg.kind {
                ArgKind::Input(path) => {
                    add(i, path.clone(), state, false);
                    continue;
                }
                ArgKind::Unknown => continue,
                ArgKind::Opt { id, value } => (*id, value.as_deref().unwrap_or_default()),
            };
            match id {
                OptId::Library => {
                    let path = search.library(value, state.is_static);
                    let path = path.ok_or_else(|| anyhow!("unable to find library -l{}", value.to_string_lossy()))?;
                    add(i, path, state, false);
                }
                OptId::Script | OptId::DefaultScript => {
                    let path = search.script(value).unwrap_or_else(|| PathBuf::from(value));
                    add(i, path, state, true);
                }
                OptId::AsNeeded => state.as_needed = true,
                OptId::NoAsNeeded => state.as_needed = false,
                OptId::Bstatic | OptId::Omagic | OptId::Nmagic => state.is_static = true,
                OptId::Bdynamic if !relocatable => state.is_static = false,
                OptId::WholeArchive => state.whole_archive = true,
                OptId::NoWholeArchive => state.whole_archive = false,
                OptId::Format => {
                    state.binary = match value.to_str() {
                        Some("binary") => true,
                        Some("elf" | "default") => false,
                        _ => bail!(
                            "unknown --format value: {} (supported formats: elf, default, binary)",
                            value.to_string_lossy()
                        ),
                    }
                }
                OptId::StartGroup => {
                    if in_group {
                        bail!("nested --start-group");
                    }
                    in_group = true;
                    state.group = Some(groups);
                }
                OptId::EndGroup => {
                    if !in_group {
                        bail!("stray --end-group");
                    }
                    in_group = false;
                    if state.group.take().is_some() {
                        groups += 1;
                    }
                }
                OptId::StartLib => {
                    if state.in_lib {
                        bail!("nested --start-lib");
                    }
                    if in_group {
                        bail!("may not nest --start-lib in --start-group");
                    }
                    state.in_lib = true;
                    in_group = true;
                }
                OptId::EndLib => {
                    if !state.in_lib {
                        bail!("stray --end-lib");
                    }
                    state.in_lib = false;
                    in_group = false;
                }
                // Only these three are saved, not groups, libs or --format.
                OptId::PushState => pushed.push((state.as_needed, state.is_static, state.whole_archive)),
                OptId::PopState => {
                    let saved = pushed.pop().ok_or_else(|| anyhow!("unbalanced --push-state/--pop-state"))?;
                    (state.as_needed, state.is_static, state.whole_archive) = saved;
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// Turn a lookup into (tokens used, kind).
fn classify(found: Lookup, tok: &OsStr) -> Result<(usize, ArgKind)> {
    Ok(match found {
        Lookup::Input => (1, ArgKind::Input(PathBuf::from(tok))),
        Lookup::Unknown => (1, ArgKind::Unknown),
        Lookup::Opt { info, value, consumes_next } => {
            (1 + consumes_next as usize, ArgKind::Opt { id: info.id, value: value.map(OsStr::to_os_string) })
        }
        Lookup::MissingValue(_) => bail!("{}: missing argument", tok.to_string_lossy()),
    })
}

/// The last value of option `id` in an unexpanded argv.
fn last_value(argv: &[OsString], id: OptId) -> Option<&OsStr> {
    let mut found = None;
    let mut i = 0;
    while i < argv.len() {
        if let Lookup::Opt { info, value, consumes_next } = lookup(&argv[i], argv.get(i + 1).map(|t| t.as_os_str())) {
            if info.id == id {
                found = value;
            }
            i += consumes_next as usize;
        }
        i += 1;
    }
    found
}

/// lld's file search (lld/ELF/DriverUtils.cpp).
struct Search<'a> {
    cwd: &'a Path,
    /// `-L` dirs in command-line order, wherever they appear.
    dirs: Vec<&'a OsStr>,
    sysroot: &'a OsStr,
}

impl Search<'_> {
    /// `-l:file` is `file` on the search path; `-lname` is `libname.so`,
    /// then `libname.a`, in each dir in turn (so an earlier dir's `.a` beats
    /// a later dir's `.so`); only `.a` when static.
    fn library(&self, name: &OsStr, is_static: bool) -> Option<PathBuf> {
        if let Some(file) = name.as_bytes().strip_prefix(b":") {
            return self.in_dirs(file);
        }
        let lib = |ext: &str| [&b"lib"[..], name.as_bytes(), ext.as_bytes()].concat();
        self.dirs.iter().find_map(|dir| {
            if !is_static {
                if let Some(so) = self.find(dir, &lib(".so")) {
                    return Some(so);
                }
            }
            self.find(dir, &lib(".a"))
        })
    }

    /// A `-T` script is read from the current directory, else the search path.
    fn script(&self, name: &OsStr) -> Option<PathBuf> {
        if self.cwd.join(name).exists() {
            return Some(PathBuf::from(name));
        }
        self.in_dirs(name.as_bytes())
    }

    fn in_dirs(&self, file: &[u8]) -> Option<PathBuf> {
        self.dirs.iter().find_map(|dir| self.find(dir, file))
    }

    /// `dir/file` if it exists; a dir starting with `=` is under the sysroot.
    fn find(&self, dir: &OsStr, file: &[u8]) -> Option<PathBuf> {
        let mut path = Vec::new();
        match dir.as_bytes().strip_prefix(b"=") {
            Some(under_sysroot) => {
                llvm_append(&mut path, self.sysroot.as_bytes());
                llvm_append(&mut path, under_sysroot);
            }
            None => llvm_append(&mut path, dir.as_bytes()),
        }
        llvm_append(&mut path, file);
        let path = PathBuf::from(OsString::from_vec(path));
        self.cwd.join(&path).exists().then_some(path)
    }
}

/// Join like llvm::sys::path::append: unlike `PathBuf::push`, a component
/// starting with `/` does not replace what came before (`-L=/usr/lib` with
/// `--sysroot=s` is `s/usr/lib`).
fn llvm_append(path: &mut Vec<u8>, component: &[u8]) {
    if path.last() == Some(&b'/') {
        let start = component.iter().position(|&b| b != b'/').unwrap_or(component.len());
        path.extend_from_slice(&component[start..]);
    } else {
        if !path.is_empty() && component.first() != Some(&b'/') {
            path.push(b'/');
        }
        path.extend_from_slice(component);
    }
}

#[cfg(test)]
mod tests;

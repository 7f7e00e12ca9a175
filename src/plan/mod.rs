//! The pure planning stage: from the parsed command line and what each
//! input file is, decide whether to pass the link through or distribute it,
//! and if so spell out the thin-link, the backends and the final link.
//!
//! Nothing here touches the file system: every fact arrives in [`Facts`], so
//! each decision is unit-testable.

pub mod backend;
pub mod codegen;
pub mod fallback;
pub mod final_link;

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::args::{Arg, ArgKind, CommandLine, InputRef, OptId};
use crate::input::{Archive, FileKind};
pub use fallback::Fallback;

/// Why a link goes straight to ld.lld.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Passthrough {
    /// The common case: nothing to distribute. Silent.
    NoBitcode,
    /// A shared object (`-shared`: the kernel's vDSOs). Left to ld.lld by
    /// design, not for want of a way: a few tiny modules, where the exact
    /// in-process result is what the kernel gets today. (riscv's 6.12 LTO
    /// vDSO has its C entry points hidden by -fvisibility=hidden: ld.lld
    /// in-process checks the version script before dropping them, a link
    /// of natives fails on it.) Silent but with KDTHIN_VERBOSE.
    SharedObject,
    /// Something we cannot reproduce faithfully; printed as one line.
    Unsupported(Fallback),
}

impl fmt::Display for Passthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Passthrough::NoBitcode => write!(f, "no bitcode inputs"),
            Passthrough::SharedObject => write!(f, "a shared object (-shared) is always linked by ld.lld itself"),
            Passthrough::Unsupported(why) => write!(f, "{why}"),
        }
    }
}

/// What we learned about one input path.
#[derive(Clone, Debug)]
pub enum FileFacts {
    Plain(FileKind),
    Archive(Archive),
}

/// Facts about every input path, keyed by `InputRef::path`.
pub type Facts = HashMap<PathBuf, FileFacts>;

/// Where a module's bitcode comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A bitcode file on the command line or a thin-archive member: a real
    /// kbuild object, with a `.cmd` file beside it.
    Object,
    /// A member of a regular archive, extracted into the work directory.
    /// kbuild never builds these, so there is no `.cmd` to read.
    Extracted { archive: PathBuf, member: String, range: (u64, u64) },
}

/// One ThinLTO module and the files that belong to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// The path given to the thin-link; ld.lld names the module after it.
    pub path: PathBuf,
    pub origin: Origin,
    /// `<work>/idx/<path>.thinlto.bc`
    pub index: PathBuf,
    /// `<work>/idx/<path>.imports`
    pub imports: PathBuf,
    /// `<stem>.thinlto-native.o` beside the bitcode (kbuild objects), or in
    /// the work directory (extracted members).
    pub native: PathBuf,
}

/// A thin archive to write in the work directory for the final link, in
/// place of an archive that held bitcode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewArchive {
    pub path: PathBuf,
    pub members: Vec<NewMember>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewMember {
    /// An ELF member kept as it was (thin: its file; regular: extracted).
    Native(PathBuf),
    /// The native object of module N (left out if ld.lld did not use it).
    Module(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistPlan {
    pub work: PathBuf,
    /// Where index and imports files go (may be outside `work`).
    pub index_dir: PathBuf,
    pub modules: Vec<Module>,
    /// Arguments (without argv[0]) of the index-only thin-link.
    pub thin_link: Vec<OsString>,
    /// The file ld.lld writes the list of used modules' outputs to.
    pub list_file: PathBuf,
    /// Prefix ld.lld puts in front of every module path in index files and
    /// in the list (`--thinlto-prefix-replace=;PREFIX`).
    pub index_prefix: OsString,
    /// Regular-archive members to write into the work directory before the
    /// thin-link: (archive, byte range, destination).
    pub extract: Vec<(PathBuf, (u64, u64), PathBuf)>,
    pub new_archives: Vec<NewArchive>,
    /// Final-link edits: argument index -> what replaces it.
    pub final_subst: Vec<(usize, FinalSubst)>,
    /// Link options that must reach every backend, in clang's spelling
    /// (see [`codegen::LTO_OPTIONS`]).
    pub backend_extra: Vec<OsString>,
    /// What each backend's object must be (the link's machine).
    pub native_check: crate::exec::verify::NativeCheck,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinalSubst {
    Module(usize),
    Archive(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Plan {
    Passthrough(Passthrough),
    Distribute(DistPlan),
}

fn unsupported(why: impl Into<String>) -> Plan {
    Plan::Passthrough(Passthrough::Unsupported(Fallback::CommandLine(why.into())))
}

/// Is this input a bitcode file or an archive holding bitcode?
fn holds_bitcode(facts: &FileFacts) -> bool {
    match facts {
        FileFacts::Plain(k) => k.is_bitcode(),
        FileFacts::Archive(a) => a.has_bitcode(),
    }
}

/// Decide. `inputs` are `cl.inputs()`, `facts` describes each input path.
/// `work` is the per-link work directory; `index_dir` is where the
/// thin-link writes its index and imports files (a tmpfs when there is one:
/// creating a thousand small files on a disk file system is most of a
/// no-op relink's cost).
pub fn plan(cl: &CommandLine, inputs: &[InputRef], facts: &Facts, work: &Path, index_dir: &Path) -> Plan {
    let bitcode_inputs =
        inputs.iter().filter(|i| !i.is_script && facts.get(&i.path).is_some_and(holds_bitcode)).count();
    if bitcode_inputs == 0 {
        return Plan::Passthrough(Passthrough::NoBitcode);
    }
    let shared = |a: &Arg| a.opt_info().is_some_and(|i| matches!(i.name, "shared" | "Bshareable"));
    if cl.args.iter().any(|a| matches!(a.kind, ArgKind::Opt { .. }) && shared(a)) {
        return Plan::Passthrough(Passthrough::SharedObject);
    }
    let backend_extra = match codegen::backend_options(cl) {
        Ok(v) => v,
        Err(why) => return unsupported(why),
    };

    let index_prefix = {
        let mut p = index_dir.as_os_str().to_os_string();
        p.push("/");
        p
    };
    let mut b = Builder {
        work,
        index_prefix: index_prefix.clone(),
        modules: Vec::new(),
        seen: HashSet::new(),
        extract: Vec::new(),
        new_archives: Vec::new(),
        final_subst: Vec::new(),
        thin_edits: HashMap::new(),
    };

    for input in inputs.iter().filter(|i| !i.is_script) {
        let Some(f) = facts.get(&input.path) else { continue };
        let r = match f {
            FileFacts::Plain(k) if k.is_bitcode() => b.plain_bitcode(input),
            FileFacts::Archive(a) if a.has_bitcode() => b.archive(input, a),
            _ => Ok(()),
        };
        if let Err(why) = r {
            return unsupported(why);
        }
    }

    // clang's backend cannot import from bitcode at a path with non-ASCII
    // characters: it prints "Error loading imported file" and exits 0
    // (clang 22), where in-process ld.lld links the same files. Such
    // links stay in-process (kernel trees are ASCII; this is for the
    // odd build directory).
    if let Some(p) =
        b.modules.iter().map(|m| &m.path).chain([&index_dir.to_path_buf()]).find(|p| !p.as_os_str().is_ascii())
    {
        return unsupported(format!(
            "{}: not an ASCII path, which clang's ThinLTO backends cannot import from",
            p.display()
        ));
    }

    let list_file = work.join("thinlto.list");
    // The thin-link writes no output, but ld.lld first checks that it
    // could (a 1-byte `<-o>.tmpXXXXXXX` it then discards): pointed into
    // the work directory, a thin-link killed in between leaves nothing
    // beside the real output.
    let output_name = cl.value_of(OptId::Output).and_then(|o| Path::new(o).file_name()).unwrap_or(OsStr::new("a.out"));
    let probe_output: OsString = work.join(output_name).into_os_string();
    let mut thin_edits = std::mem::take(&mut b.thin_edits);
    let mut thin_link = cl.render_flat(&mut |i: usize, a: &Arg| {
        if let Some(r) = thin_edits.remove(&i) {
            return Some(r);
        }
        match &a.kind {
            // ld.lld resolves archives without groups, and --start-lib may
            // not nest inside --start-group: drop the markers.
            ArgKind::Opt { id: OptId::StartGroup | OptId::EndGroup, .. } => Some(vec![]),
            ArgKind::Opt { id: OptId::Output, .. } => Some(vec!["-o".into(), probe_output.clone()]),
            _ => None,
        }
    });
    if !cl.has(OptId::Output) {
        thin_link.extend(["-o".into(), probe_output]);
    }
    let mut only = OsString::from("--thinlto-index-only=");
    only.push(&list_file);
    let mut replace = OsString::from("--thinlto-prefix-replace=;");
    replace.push(&index_prefix);
    thin_link.extend([only, "--thinlto-emit-imports-files".into(), replace]);

    Plan::Distribute(DistPlan {
        work: work.to_path_buf(),
        index_dir: index_dir.to_path_buf(),
        modules: b.modules,
        thin_link,
        list_file,
        index_prefix,
        extract: b.extract,
        new_archives: b.new_archives,
        final_subst: b.final_subst,
        backend_extra,
        native_check: crate::exec::verify::NativeCheck::for_emulation(
            cl.value_of(OptId::Emulation).and_then(|e| e.to_str()),
        ),
    })
}

struct Builder<'a> {
    work: &'a Path,
    index_prefix: OsString,
    modules: Vec<Module>,
    seen: HashSet<PathBuf>,
    extract: Vec<(PathBuf, (u64, u64), PathBuf)>,
    new_archives: Vec<NewArchive>,
    final_subst: Vec<(usize, FinalSubst)>,
    /// Thin-link edits: argument index -> replacement tokens.
    thin_edits: HashMap<usize, Vec<OsString>>,
}

impl Builder<'_> {
    fn add_module(&mut self, path: PathBuf, origin: Origin, native: PathBuf) -> Result<usize, String> {
        // In-process, ld.lld names archive members `a.a(m.o at 123)`, so
        // they never collide; we hand it plain paths, which could.
        if !self.seen.insert(path.clone()) {
            return Err(format!("bitcode {} appears twice in the link", path.display()));
        }
        let mut base = self.index_prefix.clone();
        base.push(path.as_os_str());
        let with = |ext: &str| {
            let mut p = base.clone();
            p.push(ext);
            PathBuf::from(p)
        };
        self.modules.push(Module { index: with(".thinlto.bc"), imports: with(".imports"), path, origin, native });
        Ok(self.modules.len() - 1)
    }

    fn plain_bitcode(&mut self, input: &InputRef) -> Result<(), String> {
        let n = self.add_module(input.path.clone(), Origin::Object, native_beside(&input.path))?;
        self.final_subst.push((input.arg_index, FinalSubst::Module(n)));
        Ok(())
    }

    fn archive(&mut self, input: &InputRef, ar: &Archive) -> Result<(), String> {
        let n_ar = self.new_archives.len();
        let ar_dir = self.work.join("ar").join(n_ar.to_string());
        let mut members = Vec::new();
        let mut thin_paths: Vec<OsString> = Vec::new();
        for (i, m) in ar.members.iter().enumerate() {
            let path = match &m.path {
                Some(p) => p.clone(),
                None => {
                    // Regular archive: give each member its own file. The
                    // index keeps names unique even if members share one.
                    let dest = ar_dir.join(format!("{i}")).join(&m.name);
                    let range = m.data.expect("regular archive member has data");
                    self.extract.push((ar.path.clone(), range, dest.clone()));
                    dest
                }
            };
            thin_paths.push(path.clone().into_os_string());
            if m.kind.is_bitcode() {
                let (origin, native) = match &m.path {
                    Some(p) => (Origin::Object, native_beside(p)),
                    None => (
                        Origin::Extracted {
                            archive: ar.path.clone(),
                            member: m.name.clone(),
                            range: m.data.expect("regular archive member has data"),
                        },
                        native_beside(&path),
                    ),
                };
                let n = self.add_module(path, origin, native)?;
                members.push(NewMember::Module(n));
            } else {
                members.push(NewMember::Native(path));
            }
        }
        // Whole-archive members are all loaded: plain objects behave the
        // same. Lazy members keep archive semantics with --start-lib.
        let lazy = !input.state.whole_archive && !input.state.in_lib;
        let mut toks = Vec::with_capacity(thin_paths.len() + 2);
        if lazy {
            toks.push("--start-lib".into());
        }
        toks.extend(thin_paths);
        if lazy {
            toks.push("--end-lib".into());
        }
        self.thin_edits.insert(input.arg_index, toks);
        let name = ar.path.file_name().unwrap_or(OsStr::new("lib.a"));
        self.new_archives.push(NewArchive {
            path: self.work.join("ar").join(format!("{n_ar}-{}", name.to_string_lossy())),
            members,
        });
        self.final_subst.push((input.arg_index, FinalSubst::Archive(n_ar)));
        Ok(())
    }
}

/// `dir/foo.o` -> `dir/foo.thinlto-native.o`, the name upstream kbuild's
/// CONFIG_LTO_CLANG_THIN_DIST uses (and `make clean` removes).
pub fn native_beside(obj: &Path) -> PathBuf {
    let stem = obj.file_stem().unwrap_or(obj.as_os_str());
    let mut name = stem.to_os_string();
    name.push(".thinlto-native.o");
    obj.with_file_name(name)
}

#[cfg(test)]
pub(crate) mod tests;

//! One backend [`Job`] as an REAPI Action: its input root, command and
//! digests. Pure apart from reading (through memos) the files it names.
//!
//! The input root holds exactly what the compile reads, laid out so that
//! the command line stays as it is wherever that matters:
//! - the module's bitcode and the bitcode it imports, at the relative
//!   paths the thin-link was given, under `work/` (the working
//!   directory; not the root, which chroot-style runners cover with the
//!   system's /lib and /usr). Those strings must not change: clang
//!   finds the module in the index shard by the name on its command line
//!   (a different name compiles an empty object), and opens each imported
//!   module by the path the shard records. Paths with `..` that climb
//!   above the build directory make the working directory a matching
//!   number of levels deep (named as the build directory's own last
//!   components). An absolute bitcode path cannot be relocated without
//!   rewriting the shard: such a job runs locally.
//! - the index shard, moved into the root (`.kdthin-remote/index.thinlto.bc`,
//!   `-fthinlto-index=` rewritten) and the output at
//!   `.kdthin-remote/out.o` (`-o` rewritten), so that the Action does not
//!   depend on per-link temporary paths and a second link hits.
//! - files the asm `.incbin`s (IKCONFIG's config_data.gz), mirrored like
//!   bitcode (the assembler resolves them against the working directory).
//! - any other argument that names an existing regular file (after `=`,
//!   or a bare word): a profile, an ignore list. Mirrored when relative
//!   and inside the root, else copied under `.kdthin-remote/files/N/` and
//!   the argument rewritten. Exception: the values of preprocessor options
//!   (`-include`, `-imacros`, `-I`, `-isystem`, ...). A backend compiles
//!   `-x ir` and never reads them: `strace -f -e trace=%file` of
//!   `clang -x ir -c m.o -include h.h -I dir` shows neither opened nor
//!   stat'ed, and clang warns they are unused.
//!
//! The compiler runs by absolute path (a sandbox has no PATH). The
//! worker must have the same toolchain at the same path; the Command
//! carries the local compiler's identity (`KDTHIN_COMPILER_ID`, a hash of
//! its resolved path and `--version`) so that results from different
//! toolchains are never shared.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;
use sha2::{Digest as _, Sha256};

use crate::exec::Job;
use crate::kbuild::clang_options::PREPROCESSOR_VALUE;
use crate::plan::backend::{named_files, BackendCommand};

/// Directory (inside the working directory) for the relocated index, the
/// output and relocated flag files. A dot name no kbuild path uses.
pub const SYNTH_DIR: &str = ".kdthin-remote";
pub const OUTPUT: &str = ".kdthin-remote/out.o";
/// The directory of the input root that the build directory maps to.
const TOP: &str = "work";
const INDEX: &str = ".kdthin-remote/index.thinlto.bc";
/// Bump when the meaning of an action changes: old results are not reused.
const SALT: &[u8] = b"kdthin-backend-action-1";

/// Why a job is not sent to the remote: it runs locally instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotRemotable(pub String);

impl std::fmt::Display for NotRemotable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SHA-256 digest of a blob (REAPI's default digest function).
pub type Digest = re::Digest;

pub fn digest_of(data: &[u8]) -> Digest {
    Digest { hash: hex(&Sha256::digest(data)), size_bytes: data.len() as i64 }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a blob's bytes come from when it has to be uploaded.
#[derive(Clone, Debug)]
pub enum Source {
    File(PathBuf),
    Bytes(Arc<Vec<u8>>),
}

/// What a job needs from its environment, behind a trait so that action
/// building is testable without a compiler.
pub trait Facts {
    /// Digest of a regular file (memoised per link), or why not.
    fn file_digest(&self, path: &Path) -> Result<Digest, String>;
    /// `.incbin` names in a bitcode file's asm, as written.
    fn incbins(&self, bitcode: &Path) -> Result<Vec<PathBuf>, String>;
    /// Absolute path and identity hash of the compiler `argv[0]` names.
    fn compiler(&self, program: &OsStr) -> Result<(PathBuf, String), String>;
    /// The directory backends run in.
    fn cwd(&self) -> &Path;
    /// Environment variables to pass on (name, value), sorted.
    fn env(&self) -> Vec<(String, String)>;
}

/// One job as an Action, ready to upload and execute.
#[derive(Debug)]
pub struct Prepared {
    pub action_digest: Digest,
    /// Every blob the action needs: files, directories, command, action.
    pub blobs: Vec<(Digest, Source)>,
    /// The output file's path as the ActionResult names it (relative to
    /// the working directory).
    pub output: String,
    /// The rewritten command line (for messages).
    pub arguments: Vec<String>,
}

enum Node {
    File { digest: Digest, source: Source },
    Dir(BTreeMap<String, Node>),
}

/// The input root being assembled, by normalised path.
struct Root {
    top: BTreeMap<String, Node>,
}

impl Root {
    fn dir_mut<'a>(&'a mut self, comps: &[String]) -> Result<&'a mut BTreeMap<String, Node>, NotRemotable> {
        let mut cur = &mut self.top;
        for c in comps {
            let n = cur.entry(c.clone()).or_insert_with(|| Node::Dir(BTreeMap::new()));
            cur = match n {
                Node::Dir(d) => d,
                Node::File { .. } => return Err(NotRemotable(format!("{c}: both a file and a directory"))),
            };
        }
        Ok(cur)
    }

    fn add_file(&mut self, comps: &[String], digest: Digest, source: Source) -> Result<(), NotRemotable> {
        let (name, dirs) = comps.split_last().ok_or_else(|| NotRemotable("empty path".into()))?;
        let dir = self.dir_mut(dirs)?;
        match dir.get(name) {
            Some(Node::File { digest: d, .. }) if *d == digest => Ok(()),
            Some(_) => Err(NotRemotable(format!("{}: two different inputs at one path", comps.join("/")))),
            None => {
                dir.insert(name.clone(), Node::File { digest, source });
                Ok(())
            }
        }
    }

    /// Serialise bottom-up; returns the root digest and adds every
    /// Directory (and file) blob to `blobs`.
    fn finish(self, blobs: &mut Vec<(Digest, Source)>) -> Digest {
        fn walk(entries: BTreeMap<String, Node>, blobs: &mut Vec<(Digest, Source)>) -> Digest {
            let mut dir = re::Directory::default();
            // BTreeMap order is byte order of UTF-8 names: the canonical
            // form REAPI asks for.
            for (name, node) in entries {
                match node {
                    Node::File { digest, source } => {
                        blobs.push((digest.clone(), source));
                        dir.files.push(re::FileNode {
                            name,
                            digest: Some(digest),
                            is_executable: false,
                            node_properties: None,
                        });
                    }
                    Node::Dir(sub) => {
                        let digest = walk(sub, blobs);
                        dir.directories.push(re::DirectoryNode { name, digest: Some(digest) });
                    }
                }
            }
            let bytes = dir.encode_to_vec();
            let digest = digest_of(&bytes);
            blobs.push((digest.clone(), Source::Bytes(Arc::new(bytes))));
            digest
        }
        walk(self.top, blobs)
    }
}

fn utf8(p: &OsStr) -> Result<&str, NotRemotable> {
    p.to_str().ok_or_else(|| NotRemotable(format!("{}: not UTF-8", Path::new(p).display())))
}

/// `rel` (relative to the build directory) as components of a path in the
/// input root whose working directory is `wd` (components), `..`
/// resolved lexically. Err when it climbs out of the root.
fn place(wd: &[String], rel: &Path) -> Result<Vec<String>, String> {
    let mut cur: Vec<String> = wd.to_vec();
    for c in rel.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if cur.pop().is_none() {
                    return Err("climbs above the input root".into());
                }
            }
            Component::Normal(n) => cur.push(n.to_str().ok_or("not UTF-8")?.to_string()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute".into()),
        }
    }
    if cur.is_empty() {
        return Err("names the root".into());
    }
    Ok(cur)
}

/// How many levels above the build directory `rel` reaches (0 if never).
fn climb(rel: &Path) -> usize {
    let (mut depth, mut max) = (0isize, 0isize);
    for c in rel.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        max = max.min(depth);
    }
    (-max) as usize
}

pub fn prepare(job: &Job, facts: &dyn Facts, platform: &[(String, String)]) -> Result<Prepared, NotRemotable> {
    let Some(cmd) = job.command.backend() else {
        return Err(NotRemotable("not a ThinLTO backend job".into()));
    };
    let cwd = facts.cwd();
    let (compiler, compiler_id) = facts.compiler(&cmd.compiler).map_err(NotRemotable)?;

    // Bitcode paths must keep their spelling; they decide the working
    // directory's depth.
    let modules: Vec<&Path> = cmd.modules().collect();
    for m in &modules {
        if m.is_absolute() {
            return Err(NotRemotable(format!(
                "{}: absolute bitcode path (the index names it; cannot relocate)",
                m.display()
            )));
        }
    }
    let mut incbins = Vec::new();
    for m in &modules {
        incbins.extend(facts.incbins(m).map_err(NotRemotable)?);
    }
    incbins.sort();
    incbins.dedup();
    for i in &incbins {
        if i.is_absolute() {
            return Err(NotRemotable(format!(".incbin \"{}\": absolute path", i.display())));
        }
    }
    let depth = modules.iter().copied().chain(incbins.iter().map(PathBuf::as_path)).map(climb).max().unwrap_or(0);
    let cwd_names: Vec<String> = cwd
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str().map(str::to_string),
            _ => None,
        })
        .collect();
    if depth > cwd_names.len() {
        return Err(NotRemotable("a bitcode path climbs above /".into()));
    }
    // Never the root itself: runners that chroot into the input root
    // (buildbox-run) mount the system's /lib, /bin, /usr over it, and a
    // kernel tree has lib/ and usr/ of its own.
    let wd: Vec<String> =
        std::iter::once(TOP.to_string()).chain(cwd_names[cwd_names.len() - depth..].iter().cloned()).collect();

    let mut root = Root { top: BTreeMap::new() };
    let mirror = |root: &mut Root, rel: &Path| -> Result<(), NotRemotable> {
        let comps = place(&wd, rel).map_err(|e| NotRemotable(format!("{}: {e}", rel.display())))?;
        // A directory that a `..` steps out of must be a real directory
        // here (lexical `..` is what the OS does only then) and must exist
        // in the root (the OS walks through it).
        let mut local = cwd.to_path_buf();
        for c in rel.components() {
            if c == Component::ParentDir {
                let md =
                    std::fs::symlink_metadata(&local).map_err(|e| NotRemotable(format!("{}: {e}", local.display())))?;
                if !md.is_dir() {
                    return Err(NotRemotable(format!("{}: `..` through a symlink", rel.display())));
                }
            }
            local.push(c);
        }
        let mut cur = wd.clone();
        for c in rel.components() {
            match c {
                Component::ParentDir => {
                    let _ = root.dir_mut(&cur)?;
                    cur.pop();
                }
                Component::Normal(n) => cur.push(utf8(n)?.to_string()),
                _ => {}
            }
        }
        let abs = cwd.join(rel);
        let digest = facts.file_digest(&abs).map_err(NotRemotable)?;
        root.add_file(&comps, digest, Source::File(abs))
    };
    for m in &modules {
        mirror(&mut root, m)?;
    }
    for i in &incbins {
        mirror(&mut root, i)?;
    }
    let _ = root.dir_mut(&wd)?;

    let synth = |rel: &str| -> Vec<String> { wd.iter().cloned().chain(rel.split('/').map(str::to_string)).collect() };
    let index_abs = if cmd.index.is_absolute() { cmd.index.clone() } else { cwd.join(&cmd.index) };
    root.add_file(&synth(INDEX), facts.file_digest(&index_abs).map_err(NotRemotable)?, Source::File(index_abs))?;

    // The command as the worker runs it: the index and the output at
    // their fixed places, the compiler by absolute path, and every flag
    // that names an existing file pointing into the root.
    let mut extra = 0;
    let mut relocate = |flags: &[OsString], prev: Option<&OsStr>| -> Result<Vec<OsString>, NotRemotable> {
        let mut out = Vec::with_capacity(flags.len());
        let mut prev = prev;
        for flag in flags {
            let arg = flag.as_bytes();
            if arg.starts_with(b"@") {
                return Err(NotRemotable("response file in the backend command".into()));
            }
            if prev.is_some_and(|p| PREPROCESSOR_VALUE.iter().any(|o| p == *o)) {
                out.push(flag.clone());
                prev = Some(flag);
                continue;
            }
            let mut new = arg.to_vec();
            // Right to left, so offsets stay valid while replacing.
            for (off, value) in named_files(arg).into_iter().rev() {
                let p = Path::new(OsStr::from_bytes(value));
                let abs = cwd.join(p);
                if !std::fs::metadata(&abs).is_ok_and(|m| m.is_file()) {
                    continue;
                }
                let digest = facts.file_digest(&abs).map_err(NotRemotable)?;
                let inside = !p.is_absolute() && climb(p) <= depth && place(&wd, p).is_ok();
                if inside {
                    mirror(&mut root, p)?;
                    continue;
                }
                let name =
                    p.file_name().map(|n| utf8(n).map(str::to_string)).transpose()?.unwrap_or_else(|| "file".into());
                let rel = format!("{SYNTH_DIR}/files/{extra}/{name}");
                extra += 1;
                root.add_file(&synth(&rel), digest, Source::File(abs))?;
                new.splice(off..off + value.len(), rel.bytes());
            }
            out.push(OsStr::from_bytes(&new).to_os_string());
            prev = Some(flag);
        }
        Ok(out)
    };
    let object_flags = relocate(&cmd.object_flags, None)?;
    let link_flags = relocate(&cmd.link_flags, None)?;
    let remote = BackendCommand {
        compiler: compiler.into_os_string(),
        object_flags,
        link_flags: link_flags.into(),
        index: INDEX.into(),
        bitcode: cmd.bitcode.clone(),
        imports: cmd.imports.clone(),
        output: OUTPUT.into(),
    };
    let argv = remote.argv();

    let arguments: Vec<String> = argv.iter().map(|a| utf8(a).map(str::to_string)).collect::<Result<_, _>>()?;
    let mut env = facts.env();
    env.push(("KDTHIN_COMPILER_ID".into(), compiler_id));
    env.sort();
    let platform = platform_of(platform);
    let output = OUTPUT.to_string();
    // output_files and Command.platform are deprecated (v2.1, v2.2) but
    // still what older servers read; newer ones ignore them.
    #[allow(deprecated)]
    let command = re::Command {
        arguments,
        environment_variables: env
            .into_iter()
            .map(|(name, value)| re::command::EnvironmentVariable { name, value })
            .collect(),
        output_files: vec![output.clone()],
        output_paths: vec![output.clone()],
        working_directory: wd.join("/"),
        platform: platform.clone(),
        ..Default::default()
    };

    let mut blobs = Vec::new();
    let input_root_digest = root.finish(&mut blobs);
    Ok(finish(command, input_root_digest, platform, blobs, output))
}

/// `COMPILER --version` as an action with an empty input root: what the
/// worker's compiler answers must be what the local one does.
pub fn version_probe(compiler: &Path, compiler_id: &str, platform: &[(String, String)]) -> Result<Prepared, String> {
    let compiler = compiler.to_str().ok_or_else(|| format!("{}: not UTF-8", compiler.display()))?;
    let platform = platform_of(platform);
    #[allow(deprecated)]
    let command = re::Command {
        arguments: vec![compiler.to_string(), "--version".into()],
        environment_variables: vec![re::command::EnvironmentVariable {
            name: "KDTHIN_COMPILER_ID".into(),
            value: compiler_id.into(),
        }],
        platform: platform.clone(),
        ..Default::default()
    };
    let mut blobs = Vec::new();
    let input_root_digest = Root { top: BTreeMap::new() }.finish(&mut blobs);
    Ok(finish(command, input_root_digest, platform, blobs, String::new()))
}

fn platform_of(platform: &[(String, String)]) -> Option<re::Platform> {
    (!platform.is_empty()).then(|| {
        let mut properties: Vec<re::platform::Property> = platform
            .iter()
            .map(|(name, value)| re::platform::Property { name: name.clone(), value: value.clone() })
            .collect();
        properties.sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
        re::Platform { properties }
    })
}

/// Adds the command and the action to `blobs`.
fn finish(
    command: re::Command,
    input_root_digest: Digest,
    platform: Option<re::Platform>,
    mut blobs: Vec<(Digest, Source)>,
    output: String,
) -> Prepared {
    let arguments = command.arguments.clone();
    let command_bytes = command.encode_to_vec();
    let command_digest = digest_of(&command_bytes);
    blobs.push((command_digest.clone(), Source::Bytes(Arc::new(command_bytes))));
    let action = re::Action {
        command_digest: Some(command_digest),
        input_root_digest: Some(input_root_digest),
        salt: SALT.to_vec(),
        platform,
        ..Default::default()
    };
    let action_bytes = action.encode_to_vec();
    let action_digest = digest_of(&action_bytes);
    blobs.push((action_digest.clone(), Source::Bytes(Arc::new(action_bytes))));
    // One entry per digest.
    let mut seen = std::collections::HashSet::new();
    blobs.retain(|(d, _)| seen.insert(d.hash.clone()));
    Prepared { action_digest, blobs, output, arguments }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake {
        cwd: PathBuf,
        incbins: HashMap<PathBuf, Vec<PathBuf>>,
    }

    impl Facts for Fake {
        fn file_digest(&self, path: &Path) -> Result<Digest, String> {
            std::fs::read(path).map(|d| digest_of(&d)).map_err(|e| format!("{}: {e}", path.display()))
        }
        fn incbins(&self, bitcode: &Path) -> Result<Vec<PathBuf>, String> {
            Ok(self.incbins.get(bitcode).cloned().unwrap_or_default())
        }
        fn compiler(&self, program: &OsStr) -> Result<(PathBuf, String), String> {
            Ok((Path::new("/usr/bin").join(program), "cc-id".into()))
        }
        fn cwd(&self) -> &Path {
            &self.cwd
        }
        fn env(&self) -> Vec<(String, String)> {
            vec![]
        }
    }

    fn tree() -> (tempfile::TempDir, Fake) {
        let t = tempfile::tempdir().unwrap();
        let cwd = t.path().join("src/linux");
        for (p, data) in [
            ("src/linux/init/main.o", "main"),
            ("src/linux/lib/string.o", "string"),
            ("src/linux/arch/x86/kvm/keep", ""),
            ("src/virt/kvm.o", "kvm"),
            ("src/linux/kernel/config_data.gz", "cfg"),
            ("idx/init/main.o.thinlto.bc", "index"),
            ("prof/default.profdata", "prof"),
        ] {
            let p = t.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        (t, Fake { cwd, incbins: HashMap::new() })
    }

    fn job(t: &Path, extra: &[&str], imports: &[&str]) -> Job {
        let mut object_flags: Vec<OsString> = vec!["-O2".into()];
        object_flags.extend(extra.iter().map(OsString::from));
        let cmd = BackendCommand {
            compiler: "clang-22".into(),
            object_flags,
            link_flags: Arc::from([]),
            index: t.join("idx/init/main.o.thinlto.bc"),
            bitcode: "init/main.o".into(),
            imports: imports.iter().map(PathBuf::from).collect(),
            output: "/w/native/0.o".into(),
        };
        Job { command: crate::exec::Command::Backend(cmd), ..Job::plain(0, "init/main.o", vec![]) }
    }

    fn command(p: &Prepared) -> re::Command {
        let action = p.blobs.iter().find(|(d, _)| *d == p.action_digest).unwrap();
        let Source::Bytes(a) = &action.1 else { panic!() };
        let a = re::Action::decode(a.as_slice()).unwrap();
        let c = p.blobs.iter().find(|(d, _)| Some(d) == a.command_digest.as_ref()).unwrap();
        let Source::Bytes(c) = &c.1 else { panic!() };
        re::Command::decode(c.as_slice()).unwrap()
    }

    /// Paths of files in the input root (from the blobs), with content.
    fn files(p: &Prepared) -> Vec<String> {
        let by_digest: HashMap<&str, &Source> = p.blobs.iter().map(|(d, s)| (d.hash.as_str(), s)).collect();
        let action = match by_digest[p.action_digest.hash.as_str()] {
            Source::Bytes(b) => re::Action::decode(b.as_slice()).unwrap(),
            _ => panic!(),
        };
        let mut out = Vec::new();
        fn walk(d: &re::Digest, prefix: &str, by: &HashMap<&str, &Source>, out: &mut Vec<String>) {
            let Source::Bytes(b) = by[d.hash.as_str()] else { panic!() };
            let dir = re::Directory::decode(b.as_slice()).unwrap();
            for f in &dir.files {
                out.push(format!("{prefix}{}", f.name));
            }
            for s in &dir.directories {
                out.push(format!("{prefix}{}/", s.name));
                walk(s.digest.as_ref().unwrap(), &format!("{prefix}{}/", s.name), by, out);
            }
        }
        walk(action.input_root_digest.as_ref().unwrap(), "", &by_digest, &mut out);
        out.sort();
        out
    }

    #[test]
    fn relative_inputs_mirrored_index_and_output_relocated() {
        let (t, f) = tree();
        let p = prepare(&job(t.path(), &[], &["lib/string.o"]), &f, &[]).unwrap();
        let c = command(&p);
        assert_eq!(c.working_directory, "work");
        assert_eq!(
            c.arguments,
            [
                "/usr/bin/clang-22",
                "-O2",
                "-Wno-unused-command-line-argument",
                "-x",
                "ir",
                "-fno-lto",
                "-fthinlto-index=.kdthin-remote/index.thinlto.bc",
                "-c",
                "-o",
                OUTPUT,
                "init/main.o"
            ]
        );
        assert_eq!(c.output_paths, [OUTPUT]);
        assert_eq!(c.environment_variables[0].name, "KDTHIN_COMPILER_ID");
        assert_eq!(
            files(&p),
            [
                "work/",
                "work/.kdthin-remote/",
                "work/.kdthin-remote/index.thinlto.bc",
                "work/init/",
                "work/init/main.o",
                "work/lib/",
                "work/lib/string.o"
            ]
        );
    }

    #[test]
    fn the_action_does_not_depend_on_temporary_paths() {
        let (t, f) = tree();
        let a = prepare(&job(t.path(), &[], &[]), &f, &[]).unwrap();
        let j = job(t.path(), &[], &[]);
        let crate::exec::Command::Backend(mut cmd) = j.command.clone() else { unreachable!() };
        let moved = t.path().join("idx2/x.thinlto.bc");
        std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
        std::fs::copy(&cmd.index, &moved).unwrap();
        cmd.index = moved;
        cmd.output = "/w2/n/5.o".into();
        let b = prepare(&Job { command: crate::exec::Command::Backend(cmd), ..j }, &f, &[]).unwrap();
        assert_eq!(a.action_digest, b.action_digest);
        // But content does.
        std::fs::write(t.path().join("src/linux/init/main.o"), "changed").unwrap();
        let c = prepare(&job(t.path(), &[], &[]), &f, &[]).unwrap();
        assert_ne!(a.action_digest, c.action_digest);
    }

    #[test]
    fn dotdot_paths_deepen_the_working_directory() {
        let (t, f) = tree();
        let p = prepare(&job(t.path(), &[], &["arch/x86/kvm/../../../../virt/kvm.o"]), &f, &[]).unwrap();
        let c = command(&p);
        assert_eq!(c.working_directory, "work/linux");
        let fs = files(&p);
        for want in [
            "work/linux/init/main.o",
            "work/linux/arch/x86/kvm/",
            "work/virt/kvm.o",
            "work/linux/.kdthin-remote/index.thinlto.bc",
        ] {
            assert!(fs.contains(&want.to_string()), "{want} not in {fs:?}");
        }
    }

    #[test]
    fn absolute_bitcode_runs_locally() {
        let (t, f) = tree();
        let abs = t.path().join("src/linux/lib/string.o");
        let e = prepare(&job(t.path(), &[], &[abs.to_str().unwrap()]), &f, &[]).unwrap_err();
        assert!(e.0.contains("absolute bitcode path"), "{e}");
    }

    #[test]
    fn named_files_come_along_preprocessor_values_do_not() {
        let (t, f) = tree();
        let prof = t.path().join("prof/default.profdata");
        let prof_opt = format!("-fprofile-use={}", prof.display());
        let p = prepare(
            &job(t.path(), &[&prof_opt, "-include", "init/main.o", "-fsanitize-ignorelist=lib/string.o"], &[]),
            &f,
            &[],
        )
        .unwrap();
        let c = command(&p);
        assert!(
            c.arguments.contains(&"-fprofile-use=.kdthin-remote/files/0/default.profdata".to_string()),
            "{:?}",
            c.arguments
        );
        assert!(c.arguments.contains(&"-fsanitize-ignorelist=lib/string.o".to_string()), "{:?}", c.arguments);
        let fs = files(&p);
        assert!(fs.contains(&"work/.kdthin-remote/files/0/default.profdata".to_string()), "{fs:?}");
        assert!(fs.contains(&"work/lib/string.o".to_string()), "{fs:?}");
    }

    #[test]
    fn incbin_files_are_inputs() {
        let (t, mut f) = tree();
        f.incbins.insert("init/main.o".into(), vec!["kernel/config_data.gz".into()]);
        let p = prepare(&job(t.path(), &[], &[]), &f, &[]).unwrap();
        assert!(files(&p).contains(&"work/kernel/config_data.gz".to_string()));
        f.incbins.insert("init/main.o".into(), vec!["kernel/missing.gz".into()]);
        assert!(prepare(&job(t.path(), &[], &[]), &f, &[]).is_err());
    }

    #[test]
    fn platform_is_in_the_action() {
        let (t, f) = tree();
        let a = prepare(&job(t.path(), &[], &[]), &f, &[]).unwrap();
        let b = prepare(&job(t.path(), &[], &[]), &f, &[("OSFamily".into(), "linux".into())]).unwrap();
        assert_ne!(a.action_digest, b.action_digest);
        #[allow(deprecated)]
        let platform = command(&b).platform.unwrap();
        assert_eq!(platform.properties[0].name, "OSFamily");
    }
}

//! The cache key of one ThinLTO backend compile.
//!
//! Everything that decides the native object goes in, each field tagged and
//! length-prefixed (ccache's hash delimiters), so that no two different
//! field sequences can produce the same byte stream:
//! - the compiler's identity ([`CompilerId`]);
//! - the backend's flags (the object's, the link's, the fixed ones), and
//!   the bitcode path as spelled; not the per-link paths (output, index),
//!   so that moving the work directory keeps the key;
//! - the index shard: it names the modules imported and their module hashes;
//! - the bitcode of the module and of every module it imports from;
//! - the content of files the asm reads (`.incbin`), and of files named on
//!   the command line (a `-fprofile-sample-use=` profile; an `-include`d
//!   header the backend ignores costs a spurious miss at worst).
//!
//! Not in the key: the working directory, the output and index paths,
//! and the paths of imported bitcode (clang reads those from the index
//! shard, which is in the key), so that a new work directory per link
//! still hits.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::UNIX_EPOCH;

use crate::env::ToolEnv;
use crate::input::bitcode::inline_asm;
use crate::input::embed::{embedded_files, Embeds};
use crate::plan::backend::{named_files, BackendCommand};

pub type Hash = [u8; 32];

/// Bump when the meaning of a key changes: old entries then simply miss.
const KEY_VERSION: &[u8] = b"kdthin-backend-key-2";

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub(super) Hash);

impl Key {
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The key [`Key::to_hex`] wrote, e.g. into a whole-link entry.
    pub fn from_hex(s: &str) -> Option<Key> {
        let mut out: Hash = [0; 32];
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Key(out))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.to_hex())
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a backend is not cached. Not an error: the backend just runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotCacheable(pub String);

impl fmt::Display for NotCacheable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A backend compile as the key sees it.
#[derive(Clone, Copy, Debug)]
pub struct KeyInputs<'a> {
    /// The compiler enters the key as its [`CompilerId`], not as spelled;
    /// the output and index paths not at all (the index's content does).
    pub command: &'a BackendCommand,
    /// The backend's working directory: `.incbin` names and relative
    /// paths in flags are resolved against it. Must be where the backend
    /// runs, since that is where the assembler looks.
    pub cwd: &'a Path,
}

impl Key {
    /// The key, or why this backend cannot be cached. `files` memoises
    /// file hashes across the calls of one link; share it between threads.
    pub fn compute(inputs: &KeyInputs, compiler: &CompilerId, files: &FileHashes) -> Result<Key, NotCacheable> {
        let mut h = Fields::new();
        h.field("version", KEY_VERSION);
        h.field("compiler", &compiler.digest);

        // The flags. One that names a file also brings in its content: the
        // backend may read it (a sample profile, a sanitizer list) and the
        // flag alone would not show that it changed.
        let cmd = inputs.command;
        h.count("flags", cmd.flags().count());
        for flag in cmd.flags() {
            let a = flag.as_bytes();
            h.field("arg", a);
            for (_, path) in named_files(a) {
                if let Some(hash) = files.plain(&inputs.cwd.join(OsStr::from_bytes(path))) {
                    h.field("arg-file", &hash);
                }
            }
        }

        let index = std::fs::read(&cmd.index).map_err(|e| not_cacheable(&cmd.index, e))?;
        h.field("index", blake3::hash(&index).as_bytes());

        // The module itself, then what it imports from: function-level asm
        // can come in with an imported function.
        let mut embeds = Vec::new();
        let mut add = |tag: &str, path: &Path, h: &mut Fields| -> Result<(), NotCacheable> {
            let bc = files.bitcode(path)?;
            h.field(tag, &bc.hash);
            match &bc.embeds {
                Embeds::Files(f) => embeds.extend(f.iter().cloned()),
                Embeds::Unknown(why) => return Err(NotCacheable(format!("{}: {why}", path.display()))),
            }
            Ok(())
        };
        // The path too: clang finds the module in the index by the name it
        // was given on the command line, and compiles an empty object when
        // that name is not the one the thin-link used. (The shard names
        // the module anyway, so this costs no sharing.)
        h.field("bitcode-path", cmd.bitcode.as_os_str().as_bytes());
        add("bitcode", &cmd.bitcode, &mut h)?;
        h.count("imports", cmd.imports.len());
        for p in &cmd.imports {
            add("import", p, &mut h)?;
        }

        embeds.sort();
        embeds.dedup();
        h.count("incbins", embeds.len());
        for name in &embeds {
            let hash = files.plain(&inputs.cwd.join(name)).ok_or_else(|| {
                NotCacheable(format!(
                    ".incbin \"{}\" is not a readable file in {}",
                    name.display(),
                    inputs.cwd.display()
                ))
            })?;
            h.field("incbin-name", name.as_os_str().as_bytes());
            h.field("incbin", &hash);
        }
        Ok(Key(h.finish()))
    }
}

fn not_cacheable(path: &Path, e: io::Error) -> NotCacheable {
    NotCacheable(format!("{}: {e}", path.display()))
}

/// Tagged, length-prefixed fields into one blake3 hash.
pub(super) struct Fields(blake3::Hasher);

impl Fields {
    pub(super) fn new() -> Self {
        Fields(blake3::Hasher::new())
    }

    pub(super) fn field(&mut self, tag: &str, data: &[u8]) {
        self.0.update(&(tag.len() as u64).to_le_bytes());
        self.0.update(tag.as_bytes());
        self.0.update(&(data.len() as u64).to_le_bytes());
        self.0.update(data);
    }

    pub(super) fn count(&mut self, tag: &str, n: usize) {
        self.field(tag, &(n as u64).to_le_bytes());
    }

    pub(super) fn finish(&self) -> Hash {
        *self.0.finalize().as_bytes()
    }
}

/// Which compiler runs the backends. Probed once per link and compiler:
/// it runs `--version`.
#[derive(Clone, Debug)]
pub struct CompilerId {
    pub(super) digest: Hash,
    /// Resolved path and first `--version` line, for messages.
    pub description: String,
}

impl CompilerId {
    /// `program` as it will be run (a bare name is looked up in PATH).
    ///
    /// The identity is the name as invoked (clang picks its driver mode
    /// from it), the resolved binary's path, size and modification time
    /// (cheap, as ccache's default `compiler_check`; a rebuilt or
    /// reinstalled clang changes them), its `--version` output (a new
    /// package version, even when only its shared libLLVM changed), and
    /// `CCC_OVERRIDE_OPTIONS`, which edits every clang command line.
    pub fn probe(program: &OsStr, tools: &ToolEnv) -> io::Result<CompilerId> {
        let resolved = tools.resolve(program).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{}: not found", Path::new(program).display()))
        })?;
        let resolved = resolved.canonicalize()?;
        let md = std::fs::metadata(&resolved)?;
        let mtime = md.modified()?.duration_since(UNIX_EPOCH).unwrap_or_default();
        let (status, stdout) = run_version(program)?;
        if !status.success() {
            return Err(io::Error::other(format!("{} --version failed ({status})", resolved.display())));
        }
        let mut h = Fields::new();
        h.field("name", Path::new(program).file_name().unwrap_or(program).as_bytes());
        h.field("path", resolved.as_os_str().as_bytes());
        h.field("size", &md.len().to_le_bytes());
        h.field("mtime", &mtime.as_nanos().to_le_bytes());
        h.field("version", &stdout);
        h.field("ccc-override", tools.ccc_override.as_deref().unwrap_or_default().as_bytes());
        let first = String::from_utf8_lossy(&stdout).lines().next().unwrap_or("").to_string();
        Ok(CompilerId { digest: h.finish(), description: format!("{} ({first})", resolved.display()) })
    }

    #[cfg(test)]
    pub(super) fn fake(name: &str) -> CompilerId {
        CompilerId { digest: *blake3::hash(name.as_bytes()).as_bytes(), description: name.into() }
    }
}

/// `program --version`, as a child the signal handler knows about: a
/// SIGTERM mid-link must stop it like any backend.
fn run_version(program: &OsStr) -> io::Result<(std::process::ExitStatus, Vec<u8>)> {
    use std::io::Read;
    let mut child = crate::exec::signals::spawn(
        Command::new(program).arg("--version").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()),
    )?;
    let mut stdout = Vec::new();
    let read = child.stdout.take().map(|mut o| o.read_to_end(&mut stdout));
    let status = crate::exec::signals::wait_child(&mut child)?;
    if let Some(r) = read {
        r?;
    }
    Ok((status, stdout))
}

/// What a bitcode file contributes to a key.
#[derive(Clone, Debug)]
pub(super) struct BitcodeFacts {
    hash: Hash,
    pub(super) embeds: Embeds,
}

/// File hashes memoised by path for one link: one bitcode file is imported
/// by many modules, and each distinct file should be read once. Safe to
/// share between backend threads; a second thread asking for a file being
/// hashed waits for the first.
#[derive(Default)]
pub struct FileHashes {
    bitcode: Memo<Result<Arc<BitcodeFacts>, NotCacheable>>,
    plain: Memo<Option<Hash>>,
}

impl FileHashes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hash and asm scan of a bitcode file. Bitcode we cannot parse is
    /// not cacheable: it might hide an `.incbin`.
    pub(super) fn bitcode(&self, path: &Path) -> Result<Arc<BitcodeFacts>, NotCacheable> {
        self.bitcode.get(path, || {
            let data = std::fs::read(path).map_err(|e| not_cacheable(path, e))?;
            let asm = inline_asm(&data).map_err(|e| NotCacheable(format!("{}: {e}", path.display())))?;
            Ok(Arc::new(BitcodeFacts { hash: *blake3::hash(&data).as_bytes(), embeds: embedded_files(&asm) }))
        })
    }

    /// Content hash of a regular file; None when it is not one or cannot
    /// be read.
    pub(super) fn plain(&self, path: &Path) -> Option<Hash> {
        self.plain.get(path, || {
            if !std::fs::metadata(path).ok()?.is_file() {
                return None;
            }
            let data = std::fs::read(path).ok()?;
            Some(*blake3::hash(&data).as_bytes())
        })
    }
}

struct Memo<T>(Mutex<HashMap<PathBuf, Arc<OnceLock<T>>>>);

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Memo(Mutex::new(HashMap::new()))
    }
}

impl<T: Clone> Memo<T> {
    fn get(&self, path: &Path, compute: impl FnOnce() -> T) -> T {
        // The map lock is held only to find the cell; the work happens
        // outside it so different files are hashed in parallel.
        let cell = self.0.lock().unwrap_or_else(|e| e.into_inner()).entry(path.to_path_buf()).or_default().clone();
        cell.get_or_init(compute).clone()
    }
}

//! The link memo: a whole distributed link's output, kept in the backend
//! cache under a key of everything it was made from (`cache::link_key`).
//!
//! make re-runs the vmlinux.o link whenever vmlinux.a is rebuilt, which
//! happens when any object is recompiled, even to the same bytes (a touched
//! file, a branch switched and back, a header edit that changes no code).
//! Without the memo such a link costs a thin-link, thousands of cache
//! lookups and the final link (8 s on defconfig); with it, the hashing of
//! the inputs and one copy.
//!
//! Only command lines whose every option is known not to read or write
//! files outside the key qualify ([`blocker`]); anything else, or a link
//! that is being saved for a reproducer, takes the normal path. On a hit
//! the output is written atomically, with the mode the link gave it, and
//! the warnings the original link printed are printed again.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::args::{ArgKind, CommandLine, InputRef, OptId};
use crate::cache::{Cache, Key, LinkKeyInputs, ModuleInputs};
use crate::exec::verify::NativeCheck;
use crate::kbuild::compile::CompileCommand;
use crate::plan::{DistPlan, Facts, FileFacts};

/// Options a memoised link may have: they read no file but its inputs and
/// write none but its output. (`-T` scripts are inputs and hashed.)
const ALLOWED_IDS: &[OptId] = &[
    OptId::Output,
    OptId::Relocatable,
    OptId::WholeArchive,
    OptId::NoWholeArchive,
    OptId::StartGroup,
    OptId::EndGroup,
    OptId::StartLib,
    OptId::EndLib,
    OptId::PushState,
    OptId::PopState,
    OptId::Bstatic,
    OptId::Bdynamic,
    OptId::AsNeeded,
    OptId::NoAsNeeded,
    OptId::Library,
    OptId::LibraryPath,
    OptId::Script,
    OptId::Sysroot,
    OptId::Mllvm,
    OptId::LtoOptLevel,
    OptId::Emulation,
];

/// `Other` options by table name (without dashes and `=`): what kbuild's
/// links use, and a few more of the same harmless kind.
const ALLOWED_OTHER: &[&str] = &[
    "z",
    "build-id",
    "EL",
    "EB",
    "nostdlib",
    "pie",
    "no-pie",
    "no-undefined",
    "S",
    "strip-debug",
    "s",
    "strip-all",
    "X",
    "discard-locals",
    "x",
    "discard-all",
    "e",
    "entry",
    "gc-sections",
    "no-gc-sections",
    "emit-relocs",
    "q",
    "hash-style",
    "sort-section",
    "no-relax",
];

/// Why `cl` cannot be memoised, if it cannot.
pub fn blocker(cl: &CommandLine) -> Option<String> {
    for arg in &cl.args {
        match &arg.kind {
            ArgKind::Input(_) => {}
            ArgKind::Unknown => return Some(format!("unknown option {}", arg.tokens[0].to_string_lossy())),
            ArgKind::Opt { id, .. } if ALLOWED_IDS.contains(id) => {}
            ArgKind::Opt { id: OptId::Other, .. }
                if arg.opt_info().is_some_and(|i| ALLOWED_OTHER.contains(&i.name.trim_end_matches('='))) => {}
            ArgKind::Opt { .. } => return Some(format!("option {}", arg.tokens[0].to_string_lossy())),
        }
    }
    None
}

/// Stored with the output.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    /// Modules the thin-link used, for the LTO line and the report.
    pub used: usize,
    /// Native objects the link left beside their bitcode: a hit leaves
    /// exactly these there (objtool and livepatch tooling read them, and
    /// another link of the same objects, e.g. with other options or
    /// before a branch was switched back, may have installed its own).
    pub natives: Vec<NativeRecord>,
    /// The output's permission bits.
    pub mode: u32,
    /// What the link printed on stderr (lld and backend warnings).
    pub stderr: Vec<u8>,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NativeRecord {
    pub path: PathBuf,
    /// blake3 of its content.
    pub hash: String,
    /// The backend cache key it came from, to put it back when another
    /// link replaced it.
    pub key: Option<String>,
}

pub struct Memo {
    cache: Arc<Cache>,
    key: Key,
}

/// The environment variable that turns the memo off (the backend cache
/// stays on).
pub const ENV_OFF: &str = "KDTHIN_LINK_CACHE";

/// Whether a link may use the whole-link cache.
#[derive(Clone, Copy, Debug)]
pub struct LinkCacheSettings {
    /// [`ENV_OFF`] is not off.
    pub on: bool,
    /// `LLD_REPRODUCE` is set: ld.lld must really run.
    pub lld_reproduce: bool,
}

impl LinkCacheSettings {
    pub fn from_env(env: &crate::env::Env, warnings: &mut Vec<String>) -> LinkCacheSettings {
        LinkCacheSettings {
            on: crate::switch::get(ENV_OFF, true, |k| env.var_os(k), warnings),
            lld_reproduce: env.nonempty("LLD_REPRODUCE").is_some(),
        }
    }
}

impl Memo {
    /// The memo entry this link would use, or why there is none.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        cache: &Arc<Cache>,
        settings: &LinkCacheSettings,
        cwd: &Path,
        real_ld: &Path,
        cl: &CommandLine,
        inputs: &[InputRef],
        facts: &Facts,
        dist: &DistPlan,
        compiles: &[CompileCommand],
    ) -> Result<Memo, String> {
        if !settings.on {
            return Err(format!("{ENV_OFF}=off"));
        }
        // ld.lld writes a tarball of its inputs there: a memo hit would not.
        if settings.lld_reproduce {
            return Err("LLD_REPRODUCE is set".into());
        }
        if let Some(why) = blocker(cl) {
            return Err(why);
        }
        if !dist.extract.is_empty() {
            return Err("bitcode in a regular archive".into());
        }
        let argv = cl.render_flat(&mut |_, _| None);
        let mut files: Vec<PathBuf> = Vec::new();
        for i in inputs {
            files.push(i.path.clone());
            if let Some(FileFacts::Archive(a)) = facts.get(&i.path) {
                files.extend(a.members.iter().filter_map(|m| m.path.clone()));
            }
        }
        let modules: Vec<ModuleInputs> = dist
            .modules
            .iter()
            .zip(compiles)
            .map(|(m, cc)| ModuleInputs { bitcode: &m.path, compiler: &cc.compiler, flags: &cc.flags })
            .collect();
        let key = cache
            .link_key(real_ld, &LinkKeyInputs { cwd, argv: &argv, files: &files, modules: &modules })
            .map_err(|e| e.0)?;
        Ok(Memo { cache: cache.clone(), key })
    }

    /// On a hit, `output` holds the memoised link's output (written
    /// atomically) and the entry's [`Meta`] is returned. A hit whose
    /// native objects are gone is a miss (the link that follows rewrites
    /// `output` anyway).
    pub fn restore(&self, output: &Path) -> Option<Meta> {
        let meta = self.cache.get_link(&self.key, output)?;
        let meta: Meta = serde_json::from_slice(&meta).ok()?;
        if !meta.natives.iter().all(|n| self.put_back(n)) {
            return None;
        }
        let _ = std::fs::set_permissions(output, std::fs::Permissions::from_mode(meta.mode));
        Some(meta)
    }

    /// True when `n.path` holds the native the entry recorded, putting it
    /// back from the backend cache if another link replaced it.
    fn put_back(&self, n: &NativeRecord) -> bool {
        if file_hash(&n.path).is_some_and(|h| h == n.hash) {
            return true;
        }
        let Some(key) = n.key.as_deref().and_then(Key::from_hex) else { return false };
        let mut tmp = n.path.as_os_str().to_os_string();
        tmp.push(format!(".tmp_kdthin.{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let ok = self.cache.get(&key, &tmp, None, Some(&NativeCheck::default())).is_some()
            && file_hash(&tmp).is_some_and(|h| h == n.hash)
            && std::fs::rename(&tmp, &n.path).is_ok();
        if !ok {
            let _ = std::fs::remove_file(&tmp);
        }
        ok
    }

    /// After a successful link: keep its output. Problems are the cache's
    /// (one warning), never the link's.
    /// `natives`: (installed, this link's own copy) of each native; the
    /// own copy is hashed, as another link may since have installed its
    /// own beside the bitcode.
    pub fn store(&self, output: &Path, used: usize, natives: &[(PathBuf, PathBuf)], stderr: Vec<u8>) {
        let Ok(md) = std::fs::metadata(output) else { return };
        let record = |(path, own): &(PathBuf, PathBuf)| {
            let key = self.cache.key_of(path).map(|k| k.to_hex());
            Some(NativeRecord { path: path.clone(), hash: file_hash(own)?, key })
        };
        let Some(natives) = natives.iter().map(record).collect() else { return };
        let meta = Meta { used, natives, mode: md.permissions().mode() & 0o7777, stderr };
        let Ok(bytes) = serde_json::to_vec(&meta) else { return };
        self.cache.put_link(&self.key, output, &bytes);
    }
}

fn file_hash(path: &Path) -> Option<String> {
    let data = std::fs::read(path).ok()?;
    Some(blake3::hash(&data).to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn cl(args: &[&str]) -> CommandLine {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        CommandLine::parse(&argv).unwrap()
    }

    #[test]
    fn kbuild_links_qualify() {
        // vmlinux.o (6.12), a module's .ko and a multi-object module.
        for line in [
            "-m elf_x86_64 -mllvm -import-instr-limit=5 -z noexecstack -r -o vmlinux.o -T .tmp_initcalls.lds --whole-archive vmlinux.a --no-whole-archive --start-group --end-group",
            "-r -m elf_x86_64 -z noexecstack --build-id=sha1 -mllvm -import-instr-limit=5 -T scripts/module.lds -o fs/configfs/configfs.ko fs/configfs/configfs.o fs/configfs/configfs.mod.o .module-common.o",
            "-m elf_x86_64 -r -o lib/crc-ccitt.o --lto-O2 lib/a.o lib/b.o",
        ] {
            let words: Vec<&str> = line.split(' ').collect();
            assert_eq!(blocker(&cl(&words)), None, "{line}");
        }
    }

    #[test]
    fn options_with_files_of_their_own_do_not() {
        for (line, why) in [
            ("-r -o out.o a.o -Map=out.map", "-Map"),
            ("-r -o out.o a.o --reproduce=r.tar", "--reproduce"),
            ("-o out a.o --version-script=v.lds", "--version-script"),
            ("-o out a.o --why-extract=w.txt", "--why-extract"),
            ("-o out a.o --frobnicate", "--frobnicate"),
            ("-o out a.o --thinlto-cache-dir=c", "--thinlto-cache-dir"),
        ] {
            let words: Vec<&str> = line.split(' ').collect();
            let got = blocker(&cl(&words)).unwrap_or_else(|| panic!("{line}: not blocked"));
            assert!(got.contains(why), "{line}: {got}");
        }
    }
}

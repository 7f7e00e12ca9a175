//! The key of a whole distributed link, for the link memo: when make
//! re-runs a link whose inputs did not change (a rebuilt thin archive of
//! the same objects, a touched file, a branch switched back), the output is
//! copied from the cache instead of running the thin-link, ~3,000 cache
//! lookups and the final link.
//!
//! The output is a function of: the linker (identity as for a compiler),
//! the working directory, the expanded command line (output path included:
//! it can end up in the output), the content of every file the link reads
//! (objects, archives, members of thin archives, linker scripts) and, per
//! bitcode module, what its backend would be: the compiler's identity, its
//! flags and the files its asm `.incbin`s. The index shards need not be in
//! it: the thin-link computes them from the same inputs.
//!
//! Which command lines qualify is the caller's business
//! (`link::memo_blocker`): options that read or write files the key cannot
//! see keep a link out of the memo.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::key::{CompilerId, Fields, FileHashes, Key, NotCacheable};
use crate::input::embed::Embeds;

const LINK_KEY_VERSION: &[u8] = b"kdthin-link-key-1";

/// One bitcode module as the link key sees it.
#[derive(Clone, Copy, Debug)]
pub struct ModuleInputs<'a> {
    pub bitcode: &'a Path,
    /// The compiler as it would run the backend (`argv[0]`).
    pub compiler: &'a std::ffi::OsStr,
    /// Its flags (the object's compile flags, the link's backend options).
    pub flags: &'a [OsString],
}

pub struct LinkKeyInputs<'a> {
    pub cwd: &'a Path,
    /// The command line with response files expanded.
    pub argv: &'a [OsString],
    /// Every file the link reads, in command-line order.
    pub files: &'a [PathBuf],
    pub modules: &'a [ModuleInputs<'a>],
}

impl Key {
    /// `compiler` identifies a backend compiler (memoised by the caller).
    pub fn for_link(
        inputs: &LinkKeyInputs,
        linker: &CompilerId,
        files: &FileHashes,
        compiler: &dyn Fn(&std::ffi::OsStr) -> Result<std::sync::Arc<CompilerId>, NotCacheable>,
    ) -> Result<Key, NotCacheable> {
        let mut h = Fields::new();
        h.field("version", LINK_KEY_VERSION);
        h.field("linker", &linker.digest);
        h.field("cwd", inputs.cwd.as_os_str().as_bytes());
        h.count("argc", inputs.argv.len());
        for a in inputs.argv {
            h.field("arg", a.as_bytes());
        }
        h.count("files", inputs.files.len());
        for f in inputs.files {
            let hash = files
                .plain(&inputs.cwd.join(f))
                .ok_or_else(|| NotCacheable(format!("{}: not a readable file", f.display())))?;
            h.field("file-name", f.as_os_str().as_bytes());
            h.field("file", &hash);
        }
        h.count("modules", inputs.modules.len());
        for m in inputs.modules {
            h.field("module", m.bitcode.as_os_str().as_bytes());
            h.field("compiler", &compiler(m.compiler)?.digest);
            h.count("flags", m.flags.len());
            for f in m.flags {
                h.field("flag", f.as_bytes());
            }
            let bc = files.bitcode(&inputs.cwd.join(m.bitcode))?;
            match &bc.embeds {
                Embeds::Files(names) => {
                    h.count("incbins", names.len());
                    for name in names {
                        let hash = files.plain(&inputs.cwd.join(name)).ok_or_else(|| {
                            NotCacheable(format!(".incbin \"{}\" is not a readable file", name.display()))
                        })?;
                        h.field("incbin-name", name.as_os_str().as_bytes());
                        h.field("incbin", &hash);
                    }
                }
                Embeds::Unknown(why) => return Err(NotCacheable(format!("{}: {why}", m.bitcode.display()))),
            }
        }
        Ok(Key(h.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Tree {
            let t = Tree { dir: tempfile::tempdir().unwrap() };
            t.write("a.o", b"native object a");
            t.write("x.lds", b"SECTIONS {}");
            t.write("data.bin", b"config");
            t
        }
        fn write(&self, name: &str, data: &[u8]) {
            std::fs::write(self.dir.path().join(name), data).unwrap();
        }
        fn key(&self, argv: &[&str], flags: &[&str], linker: &str, cc: &str) -> Result<Key, NotCacheable> {
            let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
            let flags: Vec<OsString> = flags.iter().map(OsString::from).collect();
            let files = [PathBuf::from("a.o"), PathBuf::from("x.lds")];
            let linker = CompilerId::fake(linker);
            let cc_id = Arc::new(CompilerId::fake(cc));
            let modules = [ModuleInputs { bitcode: Path::new("a.o"), compiler: "clang".as_ref(), flags: &flags }];
            let inputs = LinkKeyInputs { cwd: self.dir.path(), argv: &argv, files: &files, modules: &modules };
            // Fresh memo per key: a link hashes each file once, but here
            // files change between keys.
            Key::for_link(&inputs, &linker, &FileHashes::new(), &|_| Ok(cc_id.clone()))
        }
    }

    // The module "bitcode" here is not bitcode: FileHashes reports it as
    // not cacheable. Those paths are tested through `FileHashes` in
    // key.rs; here only the link-level fields are.
    #[test]
    fn a_module_that_is_not_bitcode_is_not_memoised() {
        let t = Tree::new();
        let err = t.key(&["-r", "-o", "out.o", "a.o"], &["-O2"], "lld", "clang").unwrap_err();
        assert!(err.0.contains("a.o"), "{err}");
    }

    #[test]
    fn every_field_changes_the_key() {
        let t = Tree::new();
        // Bitcode the reader accepts without clang: magic, no blocks.
        t.write("a.o", b"BC\xC0\xDE\0\0\0\0");
        let base = t.key(&["-r", "-o", "out.o", "a.o"], &["-O2"], "lld", "clang").unwrap();
        assert_eq!(t.key(&["-r", "-o", "out.o", "a.o"], &["-O2"], "lld", "clang").unwrap(), base);
        assert_ne!(t.key(&["-r", "-o", "other.o", "a.o"], &["-O2"], "lld", "clang").unwrap(), base);
        assert_ne!(t.key(&["-r", "-o", "out.o", "a.o"], &["-O1"], "lld", "clang").unwrap(), base);
        assert_ne!(t.key(&["-r", "-o", "out.o", "a.o"], &["-O2"], "lld-2", "clang").unwrap(), base);
        assert_ne!(t.key(&["-r", "-o", "out.o", "a.o"], &["-O2"], "lld", "clang-2").unwrap(), base);
        t.write("x.lds", b"SECTIONS { .text : { *(.text) } }");
        assert_ne!(t.key(&["-r", "-o", "out.o", "a.o"], &["-O2"], "lld", "clang").unwrap(), base);
        t.write("x.lds", b"SECTIONS {}");
        assert_eq!(t.key(&["-r", "-o", "out.o", "a.o"], &["-O2"], "lld", "clang").unwrap(), base);
        std::fs::remove_file(t.dir.path().join("x.lds")).unwrap();
        assert!(t.key(&["-r", "-o", "out.o", "a.o"], &["-O2"], "lld", "clang").is_err());
    }
}

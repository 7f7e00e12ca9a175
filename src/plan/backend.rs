//! One ThinLTO backend compile, typed from planning to execution.
//!
//! Planning (a link's modules, or ld.lld's DTLTO job list) and kbuild
//! recovery fill the fields; the cache key, the remote action builder and
//! the reproducer read them; only an executor renders them to an argv
//! ([`BackendCommand::argv`]). Nothing parses an argv back: where the index,
//! the bitcode, the imports and the output are is known by name, not by
//! position or by spelling.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Flags every backend gets after the object's and the link's:
/// - `-Wno-unused-command-line-argument`: kbuild passes
///   `-Werror=unused-command-line-argument`, and preprocessor flags are
///   unused for IR input;
/// - `-x ir`: the input is bitcode whatever its name;
/// - `-fno-lto`: overrides `-flto=thin` in the object's flags, which would
///   otherwise make clang emit bitcode again.
pub const FIXED_FLAGS: [&str; 4] = ["-Wno-unused-command-line-argument", "-x", "ir", "-fno-lto"];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendCommand {
    /// The compiler as the object's compile ran it (or as ld.lld names it
    /// for DTLTO), without a compiler-cache wrapper.
    pub compiler: OsString,
    /// The object's own compile flags, in order, without its input, its
    /// outputs, `-c` and the dependency-file options.
    pub object_flags: Vec<OsString>,
    /// Codegen flags from the link (translated from the ld command line,
    /// or ld.lld's DTLTO common arguments): after the object's, so that
    /// they win where both speak. One list shared by every module of a
    /// link.
    pub link_flags: Arc<[OsString]>,
    /// The module's index shard (`-fthinlto-index=`).
    pub index: PathBuf,
    /// The module's bitcode, spelled as the thin-link was given it: clang
    /// finds the module in the index by this name.
    pub bitcode: PathBuf,
    /// Bitcode of the modules this one imports from (its `.imports`
    /// file): read by the backend through the index.
    pub imports: Vec<PathBuf>,
    /// The native object to write.
    pub output: PathBuf,
}

impl BackendCommand {
    /// Every flag, in the order the compiler sees them: the object's, the
    /// link's, then [`FIXED_FLAGS`]. The index, `-c`, `-o` and the bitcode
    /// follow them in [`Self::argv`].
    pub fn flags(&self) -> impl Iterator<Item = &OsStr> + '_ {
        self.object_flags
            .iter()
            .chain(self.link_flags.iter())
            .map(OsString::as_os_str)
            .chain(FIXED_FLAGS.iter().map(OsStr::new))
    }

    /// The command line. The one place a backend becomes an argv.
    pub fn argv(&self) -> Vec<OsString> {
        let mut index = OsString::from("-fthinlto-index=");
        index.push(&self.index);
        let mut argv = Vec::with_capacity(self.object_flags.len() + self.link_flags.len() + 10);
        argv.push(self.compiler.clone());
        argv.extend(self.flags().map(OsStr::to_os_string));
        argv.push(index);
        argv.extend(["-c", "-o"].map(OsString::from));
        argv.push(self.output.clone().into_os_string());
        argv.push(self.bitcode.clone().into_os_string());
        argv
    }

    /// Bitcode the backend reads: the module, then what it imports from.
    pub fn modules(&self) -> impl Iterator<Item = &Path> + '_ {
        std::iter::once(self.bitcode.as_path()).chain(self.imports.iter().map(PathBuf::as_path))
    }
}

/// The paths a flag could name: a response file `@file`, what follows any
/// `=` of an option (`-fprofile-sample-use=p`,
/// `-fbasic-block-sections=list=p`), or a bare word (the value of a
/// separate option). Returns (offset in the flag, path). Which of them are
/// files is for the caller to find out by looking: a backend reads such a
/// file (a profile, a sanitizer ignore list), so its content matters to a
/// cache key and it must travel with a remote action.
pub fn named_files(flag: &[u8]) -> Vec<(usize, &[u8])> {
    let values: Vec<(usize, &[u8])> = match flag {
        [b'-', ..] => {
            flag.iter().enumerate().filter(|(_, &b)| b == b'=').map(|(i, _)| (i + 1, &flag[i + 1..])).collect()
        }
        [b'@', rest @ ..] => vec![(1, rest)],
        _ => vec![(0, flag)],
    };
    values.into_iter().filter(|(_, v)| !v.is_empty() && v.len() < 4096).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn renders_object_then_link_flags_then_the_fixed_tail() {
        let cmd = BackendCommand {
            compiler: "clang-22".into(),
            object_flags: os(&["-O2", "-mcmodel=kernel", "-flto=thin"]),
            link_flags: os(&["-mllvm", "-import-instr-limit=5"]).into(),
            index: "idx/a.o.thinlto.bc".into(),
            bitcode: "a.o".into(),
            imports: vec!["b.o".into()],
            output: "w/native/1.o".into(),
        };
        let want = "clang-22 -O2 -mcmodel=kernel -flto=thin -mllvm -import-instr-limit=5 \
                    -Wno-unused-command-line-argument -x ir -fno-lto \
                    -fthinlto-index=idx/a.o.thinlto.bc -c -o w/native/1.o a.o";
        let got: Vec<String> = cmd.argv().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(got.join(" "), want.split_whitespace().collect::<Vec<_>>().join(" "));
        // The imports are read through the index, never named on the line.
        assert!(!got.iter().any(|a| a == "b.o"));
        assert_eq!(cmd.modules().collect::<Vec<_>>(), [Path::new("a.o"), Path::new("b.o")]);
    }

    #[test]
    fn flag_values_that_may_name_files() {
        let names = |f: &str| -> Vec<(usize, String)> {
            named_files(f.as_bytes()).into_iter().map(|(o, v)| (o, String::from_utf8_lossy(v).into_owned())).collect()
        };
        assert_eq!(names("-fprofile-sample-use=p.prof"), [(21, "p.prof".to_string())]);
        assert_eq!(names("-fbasic-block-sections=list=l.txt"), [(23, "list=l.txt".into()), (28, "l.txt".into())]);
        assert_eq!(names("@args.rsp"), [(1, "args.rsp".to_string())]);
        assert_eq!(names("include/generated/autoconf.h"), [(0, "include/generated/autoconf.h".to_string())]);
        assert!(names("-O2").is_empty());
        assert!(names("-fsanitize=").is_empty());
    }
}

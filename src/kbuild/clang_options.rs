//! What kdthin-ld knows about clang's command line, in one place: which
//! options take a separate value, which describe the compile rather than
//! its code (dependency files), which stop short of an object, and which
//! values a backend (`-x ir`) never reads. Recovering an object's compile
//! (kbuild) and building a remote action read the same tables.

/// Compiler wrappers that are dropped: ccache and sccache could cache a
/// `-fthinlto-index=` backend keyed on the bitcode and index, but the
/// kernel's `.incbin` users (kernel/configs.o with IKCONFIG) read files that
/// neither mentions, so such a cache serves stale objects. Backends are
/// cached, if at all, by kdthin-ld itself. A wrapper installed as a
/// `clang` symlink (/usr/lib/ccache/clang) cannot be recognised by name.
pub const CACHE_WRAPPERS: &[&str] = &["ccache", "sccache"];

/// clang options that, written exactly like this, take the next argument as
/// their value (clang's `Separate` and `JoinedOrSeparate` kinds, checked
/// against the installed clang by a test). Joined spellings (`-Idir`,
/// `-DX=1`) are single arguments and need no entry.
///
/// A missing entry is safe: its value would be taken for a second source
/// file and the command rejected. So is an extra one: the real source would
/// be swallowed and the command rejected for having none.
pub const SEPARATE_VALUE: &[&str] = &[
    "--analyzer-output",
    "--assert",
    "--config",
    "--define-macro",
    "--dyld-prefix",
    "--imacros",
    "--include",
    "--include-directory",
    "--include-prefix",
    "--include-with-prefix",
    "--language",
    "--library-directory",
    "--output",
    "--param",
    "--prefix",
    "--serialize-diagnostics",
    "--system-header-prefix",
    "--undefine-macro",
    "-A",
    "-B",
    "-D",
    "-F",
    "-G",
    "-I",
    "-L",
    "-MF",
    "-MJ",
    "-MQ",
    "-MT",
    "-T",
    "-U",
    "-Xanalyzer",
    "-Xarch_device",
    "-Xarch_host",
    "-Xassembler",
    "-Xclang",
    "-Xlinker",
    "-Xopenmp-target",
    "-Xpreprocessor",
    "-arch",
    "-b",
    "-cxx-isystem",
    "-dependency-dot",
    "-dependency-file",
    "-dumpdir",
    "-e",
    "-iapinotes-modules",
    "-idirafter",
    "-iframework",
    "-iframeworkwithsysroot",
    "-imacros",
    "-include",
    "-include-pch",
    "-iprefix",
    "-iquote",
    "-isysroot",
    "-isystem",
    "-isystem-after",
    "-ivfsoverlay",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-iwithsysroot",
    "-l",
    "-mllvm",
    "-mmlir",
    "-o",
    "-resource-dir",
    "-rpath",
    "-serialize-diagnostics",
    "-stdlib++-isystem",
    "-target",
    "-u",
    "-working-directory",
    "-x",
    "-z",
];

/// Dependency-file (and `-MJ` compilation-database) options: they describe
/// the original compile; a backend writing them would clobber kbuild's `.d`
/// files.
pub const DEP_FLAGS: &[&str] = &["-MD", "-MMD", "-MP"];
/// The same, taking a value (separate, or joined as `-MFfile`).
pub const DEP_VALUE: &[&str] = &["-MF", "-MT", "-MQ", "-MJ", "-dependency-file"];

/// Options that stop clang short of an object file, or make it emit
/// something other than native code from bitcode.
pub const NOT_AN_OBJECT: &[&str] = &["-E", "-S", "-M", "-MM", "-fsyntax-only", "-emit-llvm"];

/// Options whose separate value a `-x ir` compile never reads (the
/// preprocessor's): `strace -f -e trace=%file` of
/// `clang -x ir -c m.o -include h.h -I dir` shows neither opened nor
/// stat'ed, and clang warns they are unused. A remote action need not ship
/// those files.
pub const PREPROCESSOR_VALUE: &[&str] = &[
    "-I",
    "-MF",
    "-MQ",
    "-MT",
    "-idirafter",
    "-imacros",
    "-include",
    "-include-pch",
    "-iprefix",
    "-iquote",
    "-isysroot",
    "-isystem",
    "-iwithprefix",
    "-iwithprefixbefore",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kbuild::compile::tests::find_clang;

    #[test]
    fn preprocessor_values_are_separate_values() {
        let missing: Vec<&str> = PREPROCESSOR_VALUE.iter().copied().filter(|o| !SEPARATE_VALUE.contains(o)).collect();
        assert!(missing.is_empty(), "{missing:?} take a value but are not in SEPARATE_VALUE");
    }

    /// Checks SEPARATE_VALUE against the installed clang: with `-###`, an
    /// option's value that clang took as an input is reported as a missing
    /// file.
    #[test]
    fn separate_value_table_matches_clang() {
        assert!(SEPARATE_VALUE.windows(2).all(|w| w[0] < w[1]), "keep the table sorted and unique");
        let Some(clang) = find_clang() else {
            eprintln!("skipped: no clang-22 or clang on PATH");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.c"), "int x;\n").unwrap();
        let run = |opt: &str| {
            let out = std::process::Command::new(&clang)
                .current_dir(dir.path())
                .args(["-###", "-c", "-o", "t.o", "t.c", opt, "VALUE_XYZ"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stderr).contains("no such file or directory: 'VALUE_XYZ'")
        };
        assert!(run("-O2"), "the probe must see a stray positional");
        let wrong: Vec<&str> = SEPARATE_VALUE.iter().copied().filter(|o| run(o)).collect();
        assert!(wrong.is_empty(), "{clang} does not take a separate value after {wrong:?}");
    }
}

//! Files an inline-asm string makes the assembler read.
//!
//! The backend's integrated assembler reads `.incbin "file"` (and
//! `.include "file"`) when it assembles the module, so the file's content
//! decides the native object but is not in the bitcode: kernel/configs.c
//! (IKCONFIG) and kernel/kheaders.c (IKHEADERS) embed generated files this
//! way, and a cache keyed on bitcode alone serves a stale /proc/config.gz.
//!
//! The search is deliberately crude and errs towards "unknown": any
//! `.incbin`, in any case (LLVM's directives are case-insensitive), even in
//! a comment, counts. What it cannot see is a directive name built by macro
//! substitution (`.inc\()bin`); no kernel source does that.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Embeds {
    /// `.incbin` file names as written, sorted, without duplicates. Empty
    /// for the usual module, which embeds nothing.
    Files(Vec<PathBuf>),
    /// A file is read that we cannot name: the module must not be cached.
    Unknown(String),
}

/// Scan every asm string of a module (see [`super::bitcode::inline_asm`]).
pub fn embedded_files(asm: &[Vec<u8>]) -> Embeds {
    let mut files = Vec::new();
    for text in asm {
        let lower = text.to_ascii_lowercase();
        // `.include` reads through the assembler's include path (clang's -I
        // directories): too much to resolve for the one architecture (s390)
        // that uses it.
        if find(&lower, b".include", 0).is_some() {
            return Embeds::Unknown("inline asm uses .include".into());
        }
        let mut from = 0;
        while let Some(at) = find(&lower, b".incbin", from) {
            from = at + b".incbin".len();
            match quoted_name(&text[from..]) {
                Some(name) => files.push(PathBuf::from(OsString::from_vec(name.to_vec()))),
                None => {
                    let line = text[at..].split(|&b| b == b'\n').next().unwrap_or_default();
                    return Embeds::Unknown(format!(
                        "cannot tell which file `{}` reads",
                        String::from_utf8_lossy(line).trim()
                    ));
                }
            }
        }
    }
    files.sort();
    files.dedup();
    Embeds::Files(files)
}

/// The plain `"name"` after the directive. Escapes (`\"`, a macro argument
/// `\file`) and `$` (operand references in function-level asm) make the
/// name unknowable here: None.
fn quoted_name(rest: &[u8]) -> Option<&[u8]> {
    let start = rest.iter().position(|&b| b != b' ' && b != b'\t')?;
    let body = rest[start..].strip_prefix(b"\"")?;
    let end = body.iter().position(|&b| b == b'"' || b == b'\\' || b == b'$' || b == b'\n')?;
    (body[end] == b'"' && end > 0).then_some(&body[..end])
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(s: &str) -> Embeds {
        embedded_files(&[s.as_bytes().to_vec()])
    }

    fn files(v: &[&str]) -> Embeds {
        Embeds::Files(v.iter().map(PathBuf::from).collect())
    }

    #[test]
    fn ikconfig_asm() {
        // kernel/configs.c in 6.12, as clang stores it.
        let asm = "\t.pushsection .rodata, \"a\"\t\t\n\t.ascii \"IKCFG_ST\"\t\t\t\n\t.global kernel_config_data\t\t\n\
                   kernel_config_data:\t\t\t\t\n\t.incbin \"kernel/config_data.gz\"\t\n\t.popsection\t\t\t\t\n";
        assert_eq!(scan(asm), files(&["kernel/config_data.gz"]));
    }

    #[test]
    fn none_several_and_case() {
        assert_eq!(scan("nop\n.pushsection .text\n"), files(&[]));
        assert_eq!(scan(".incbin \"b\"\n.INCBIN \"a\", 4, 8\n.incbin\t\"b\""), files(&["a", "b"]));
    }

    #[test]
    fn unknowable_names() {
        assert!(matches!(scan(".macro m f\n.incbin \"\\f\"\n.endm"), Embeds::Unknown(_)));
        assert!(matches!(scan(".incbin \"a\\\"b\""), Embeds::Unknown(_)));
        assert!(matches!(scan(".incbin \"${0}\""), Embeds::Unknown(_)));
        assert!(matches!(scan(".incbin \"\""), Embeds::Unknown(_)));
        assert!(matches!(scan(".incbin \"unterminated"), Embeds::Unknown(_)));
        assert!(matches!(scan(".incbin name"), Embeds::Unknown(_)));
        assert!(matches!(scan(".include \"asm/cpu_mf-insn.h\""), Embeds::Unknown(_)));
    }
}

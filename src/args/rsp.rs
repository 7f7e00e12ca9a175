//! Response files: GNU tokenizing (as lld's `cl::TokenizeGNUCommandLine`),
//! nested `@file` expansion (as `cl::ExpandResponseFiles`), and writing
//! tokens back so that tokenizing gives them again.
//!
//! Expansion follows LLVM as lld calls it (checked against ld.lld 22):
//! - `@name` is read relative to the current directory, also when it appears
//!   inside another response file (lld does not ask for names relative to
//!   the including file);
//! - `@name` that does not exist stays a literal argument (GNU/libiberty
//!   behaviour; lld then fails to open it as an input). Any other failure to
//!   read it (a directory, no permission) is an error, as is a file that
//!   includes itself directly or through others;
//! - a UTF-8 byte order mark is skipped.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use super::RspFile;

/// Split response-file text into arguments exactly like LLVM's
/// `cl::TokenizeGNUCommandLine`: whitespace (space, tab, CR, LF) separates;
/// a backslash takes the next byte literally, inside quotes too (so, unlike
/// sh, `'a\b'` is `ab`); `'` and `"` quote; an unterminated quote runs to the
/// end; a trailing lone backslash is kept. An argument that is empty (`""`)
/// is dropped, and one containing NUL ends there (lld sees C strings).
pub fn tokenize_gnu(src: &[u8]) -> Vec<OsString> {
    let is_space = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let mut out = Vec::new();
    let mut token = Vec::new();
    let mut push = |token: &mut Vec<u8>| {
        if !token.is_empty() {
            let end = token.iter().position(|&b| b == 0).unwrap_or(token.len());
            token.truncate(end);
            out.push(OsString::from_vec(std::mem::take(token)));
        }
    };
    let mut i = 0;
    while i < src.len() {
        let c = src[i];
        if c == b'\\' && i + 1 < src.len() {
            token.push(src[i + 1]);
            i += 2;
        } else if c == b'"' || c == b'\'' {
            i += 1;
            while i < src.len() && src[i] != c {
                if src[i] == b'\\' && i + 1 < src.len() {
                    i += 1;
                }
                token.push(src[i]);
                i += 1;
            }
            i += 1; // the closing quote
        } else if is_space(c) {
            push(&mut token);
            i += 1;
        } else {
            token.push(c);
            i += 1;
        }
    }
    push(&mut token);
    out
}

/// Response-file text that [`tokenize_gnu`] (and so lld and clang) reads
/// back as exactly `tokens`, one per line, when [`try_write_rsp`] accepts
/// them. Otherwise best effort: bytes that are not UTF-8 are replaced, and
/// an empty argument is written as `""`, which readers drop.
pub fn write_rsp(tokens: &[OsString]) -> String {
    let mut out = String::new();
    for tok in tokens {
        let s = tok.to_string_lossy();
        if s.is_empty() || s.bytes().any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'"' | b'\'' | b'\\')) {
            // Inside double quotes only `"` and `\` need a backslash.
            out.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        } else {
            out.push_str(&s);
        }
        out.push('\n');
    }
    out
}

/// [`write_rsp`], refusing what a GNU response file cannot carry: an empty
/// argument (tokenizing drops it), NUL, and bytes that are not UTF-8. A
/// token starting with `@` is expanded again by the reader, as it would be
/// on a command line.
pub fn try_write_rsp(tokens: &[OsString]) -> Result<String> {
    for tok in tokens {
        let s = tok.to_str().with_context(|| format!("argument is not UTF-8: {tok:?}"))?;
        ensure!(!s.is_empty(), "an empty argument cannot be written to a response file");
        ensure!(!s.contains('\0'), "argument contains NUL: {s:?}");
    }
    Ok(write_rsp(tokens))
}

/// argv with every `@file` replaced by its contents, recursively.
#[derive(Debug, Default)]
pub(super) struct Expanded {
    pub tokens: Vec<OsString>,
    /// For each token, the response file that holds it (innermost).
    pub origin: Vec<Option<usize>>,
    pub files: Vec<RspFile>,
}

/// Expand response files in `argv`. Relative names are resolved against
/// `cwd` (`""` means the process's current directory). `windows_quoting`
/// (lld's `--rsp-quoting=windows`) is not supported: an error if a file
/// would have to be read with it.
pub(super) fn expand(argv: &[OsString], cwd: &Path, windows_quoting: bool) -> Result<Expanded> {
    let mut out = Expanded::default();
    expand_into(argv, None, cwd, windows_quoting, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn expand_into(
    tokens: &[OsString],
    parent: Option<usize>,
    cwd: &Path,
    windows_quoting: bool,
    // (device, inode) of the files being expanded, outermost first.
    open: &mut Vec<(u64, u64)>,
    out: &mut Expanded,
) -> Result<()> {
    for tok in tokens {
        let Some(name) = tok.as_bytes().strip_prefix(b"@") else {
            out.tokens.push(tok.clone());
            out.origin.push(parent);
            continue;
        };
        // A bare `@` names the current directory, as in LLVM.
        let path = match cwd.join(OsStr::from_bytes(name)) {
            p if p.as_os_str().is_empty() => PathBuf::from("."),
            p => p,
        };
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                out.tokens.push(tok.clone());
                out.origin.push(parent);
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot open response file {}", path.display())),
        };
        ensure!(!meta.is_dir(), "cannot open response file {}: is a directory", path.display());
        let id = (meta.dev(), meta.ino());
        ensure!(!open.contains(&id), "recursive expansion of: '{}'", path.display());
        if windows_quoting {
            bail!("{}: response files with --rsp-quoting=windows are not supported", path.display());
        }
        let text = fs::read(&path).with_context(|| format!("cannot read response file {}", path.display()))?;
        let inner = tokenize_gnu(skip_bom(&text).with_context(|| path.display().to_string())?);

        let index = out.files.len();
        let start = out.tokens.len();
        out.files.push(RspFile { token: tok.clone(), path, parent, span: start..start });
        open.push(id);
        expand_into(&inner, Some(index), cwd, windows_quoting, open, out)?;
        open.pop();
        out.files[index].span.end = out.tokens.len();
    }
    Ok(())
}

/// LLVM drops a UTF-8 byte order mark and converts UTF-16 text; the latter
/// is not worth supporting here.
fn skip_bom(text: &[u8]) -> Result<&[u8]> {
    if text.starts_with(&[0xFF, 0xFE]) || text.starts_with(&[0xFE, 0xFF]) {
        bail!("UTF-16 response files are not supported");
    }
    Ok(text.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn tokenizes_like_llvm() {
        // Each expectation was checked with ld.lld 22 (`cannot open X` errors).
        let src = br#"a "" b
"c d"e\ f 'g\h' i\\j "k\"l" m\"#;
        assert_eq!(tokenize_gnu(src), toks(&["a", "b", "c de f", "gh", "i\\j", "k\"l", "m\\"]));
        assert_eq!(tokenize_gnu(b"unterminated \"quote here"), toks(&["unterminated", "quote here"]));
        // Only space, tab, CR and LF separate; VT and FF are ordinary bytes.
        assert_eq!(tokenize_gnu(b"p\rq\tr\x0bs\x0ct\n"), toks(&["p", "q", "r\x0bs\x0ct"]));
        assert_eq!(tokenize_gnu(b"a\0b c"), toks(&["a", "c"]));
        assert_eq!(tokenize_gnu(b"a\\\nb 'x'\"y\"z ''"), toks(&["a\nb", "xyz"]));
        assert_eq!(tokenize_gnu(b"  \n\t "), toks(&[]));
    }

    #[test]
    fn write_rsp_round_trips() {
        let tokens = toks(&[
            "plain.o",
            "with space.o",
            "tab\there",
            "new\nline",
            "quote\"d",
            "single'q",
            "back\\slash",
            "trailing\\",
            "--defsym=a=b",
            "ünïcode",
            "\\\"'\r",
        ]);
        let text = try_write_rsp(&tokens).unwrap();
        assert_eq!(tokenize_gnu(text.as_bytes()), tokens);
        assert!(text.starts_with("plain.o\n\"with space.o\"\n"), "{text}");
    }

    #[test]
    fn write_rsp_refuses_what_cannot_round_trip() {
        assert!(try_write_rsp(&toks(&["a", ""])).is_err());
        assert!(try_write_rsp(&toks(&["a\0b"])).is_err());
        let not_utf8 = [OsString::from_vec(vec![b'a', 0xff])];
        assert!(try_write_rsp(&not_utf8).is_err());
        // The infallible form still writes something a reader accepts.
        assert_eq!(write_rsp(&toks(&["a", "", "b"])), "a\n\"\"\nb\n");
        assert_eq!(tokenize_gnu(write_rsp(&not_utf8).as_bytes()), toks(&["a\u{fffd}"]));
    }

    #[test]
    fn byte_order_marks() {
        assert_eq!(skip_bom(b"\xEF\xBB\xBFbom x").unwrap(), b"bom x");
        assert!(skip_bom(b"\xFF\xFEa\0").is_err());
    }
}

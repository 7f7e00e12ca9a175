//! What each input file is, judged by content (never by name), and the
//! members of archives; inside bitcode, the module's inline asm
//! ([`bitcode`]) and the files it `.incbin`s ([`embed`]).

pub mod archive;
pub mod bitcode;
pub mod embed;

use std::fs::File;
use std::io::Read;
use std::path::Path;

pub use archive::{read_archive, Archive, Member};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// LLVM bitcode, raw (`BC\xC0\xDE`) or in the wrapper header
    /// (`\xDE\xC0\x17\x0B`, used on Darwin but accepted by lld anywhere).
    Bitcode,
    Elf,
    Archive {
        thin: bool,
    },
    /// Anything else: ld.lld reads unknown inputs as linker scripts.
    Script,
}

impl FileKind {
    pub fn is_bitcode(self) -> bool {
        self == FileKind::Bitcode
    }
}

pub const BITCODE_MAGIC: &[u8] = b"BC\xC0\xDE";
pub const BITCODE_WRAPPER_MAGIC: &[u8] = b"\xDE\xC0\x17\x0B";
pub const ELF_MAGIC: &[u8] = b"\x7FELF";
pub const AR_MAGIC: &[u8] = b"!<arch>\n";
pub const THIN_AR_MAGIC: &[u8] = b"!<thin>\n";

/// Classify from the first bytes of a file (8 are enough).
pub fn classify(head: &[u8]) -> FileKind {
    if head.starts_with(BITCODE_MAGIC) || head.starts_with(BITCODE_WRAPPER_MAGIC) {
        FileKind::Bitcode
    } else if head.starts_with(ELF_MAGIC) {
        FileKind::Elf
    } else if head.starts_with(AR_MAGIC) {
        FileKind::Archive { thin: false }
    } else if head.starts_with(THIN_AR_MAGIC) {
        FileKind::Archive { thin: true }
    } else {
        FileKind::Script
    }
}

/// Read just enough of a file to classify it. This runs for every input of
/// every link, including passthrough ones, so it must stay this cheap.
pub fn classify_file(path: &Path) -> std::io::Result<FileKind> {
    let mut head = [0u8; 8];
    let mut f = File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(classify(&head[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers() {
        assert_eq!(classify(b"BC\xC0\xDE\x35\x14\0\0"), FileKind::Bitcode);
        assert_eq!(classify(b"\xDE\xC0\x17\x0B\0\0\0\0"), FileKind::Bitcode);
        assert_eq!(classify(b"\x7FELF\x02\x01\x01\0"), FileKind::Elf);
        assert_eq!(classify(b"!<arch>\n"), FileKind::Archive { thin: false });
        assert_eq!(classify(b"!<thin>\n"), FileKind::Archive { thin: true });
        // `BC` alone is not bitcode (a linker script may start with it).
        assert_eq!(classify(b"BC = 1;\n"), FileKind::Script);
        assert_eq!(classify(b""), FileKind::Script);
        assert_eq!(classify(b"SECTIONS"), FileKind::Script);
    }
}

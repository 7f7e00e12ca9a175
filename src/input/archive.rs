//! Reading `ar` archives, regular and thin, as ld.lld sees them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use object::read::archive::ArchiveFile;

use super::{classify, classify_file, FileKind};
use crate::paths::thin_member_path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Name as stored in the archive.
    pub name: String,
    /// Thin archives: the member's file, relative to the current directory
    /// (or absolute). Regular archives: None; the bytes are at `data`.
    pub path: Option<PathBuf>,
    /// Regular archives: byte range of the member's data.
    pub data: Option<(u64, u64)>,
    pub kind: FileKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archive {
    pub path: PathBuf,
    pub thin: bool,
    pub members: Vec<Member>,
}

impl Archive {
    pub fn has_bitcode(&self) -> bool {
        self.members.iter().any(|m| m.kind.is_bitcode())
    }
}

/// Read an archive's member list; thin members are classified by opening
/// their files. Errors name the archive and the member.
pub fn read_archive(path: &Path) -> Result<Archive> {
    let data = std::fs::read(path).with_context(|| format!("{}: cannot read archive", path.display()))?;
    parse_archive(path, &data)
}

pub fn parse_archive(path: &Path, data: &[u8]) -> Result<Archive> {
    let ar = ArchiveFile::parse(data).map_err(|e| anyhow::anyhow!("{}: malformed archive: {e}", path.display()))?;
    let thin = ar.is_thin();
    let mut members = Vec::new();
    for m in ar.members() {
        let m = m.map_err(|e| anyhow::anyhow!("{}: malformed archive member: {e}", path.display()))?;
        let name = String::from_utf8_lossy(m.name()).into_owned();
        if thin {
            let mpath = thin_member_path(path, &name);
            let kind = classify_file(&mpath)
                .with_context(|| format!("{}: thin archive member {} ({})", path.display(), name, mpath.display()))?;
            if let FileKind::Archive { .. } = kind {
                // GNU ar flattens nested thin archives when it adds them; a
                // nested one here means a tool we don't know wrote this.
                bail!("{}: member {} is itself an archive (nested archives are not supported)", path.display(), name);
            }
            members.push(Member { name, path: Some(mpath), data: None, kind });
        } else {
            let (off, len) = m.file_range();
            let bytes = m.data(data).map_err(|e| anyhow::anyhow!("{}: member {name}: {e}", path.display()))?;
            members.push(Member { name, path: None, data: Some((off, len)), kind: classify(bytes) });
        }
    }
    Ok(Archive { path: path.to_path_buf(), thin, members })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ar_header(name: &str, size: usize) -> Vec<u8> {
        format!("{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", name, 0, 0, 0, 644, size).into_bytes()
    }

    #[test]
    fn regular_archive_members_are_classified_by_content() {
        let mut a = b"!<arch>\n".to_vec();
        let bc = b"BC\xC0\xDEjunk";
        a.extend(ar_header("a.o/", bc.len()));
        a.extend(bc);
        let elf = b"\x7FELFxxxx";
        a.extend(ar_header("b.o/", elf.len()));
        a.extend(elf);
        let ar = parse_archive(Path::new("x.a"), &a).unwrap();
        assert!(!ar.thin);
        let kinds: Vec<_> = ar.members.iter().map(|m| (m.name.as_str(), m.kind)).collect();
        assert_eq!(kinds, vec![("a.o", FileKind::Bitcode), ("b.o", FileKind::Elf)]);
        let (off, len) = ar.members[1].data.unwrap();
        assert_eq!(&a[off as usize..(off + len) as usize], elf);
        assert!(ar.has_bitcode());
    }

    #[test]
    fn thin_archive_members_resolve_relative_to_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/m.o"), b"BC\xC0\xDE....").unwrap();
        let mut a = b"!<thin>\n".to_vec();
        a.extend(ar_header("m.o/", 8));
        let ar = parse_archive(&dir.path().join("sub/lib.a"), &a).unwrap();
        assert!(ar.thin);
        assert_eq!(ar.members[0].path.as_deref(), Some(dir.path().join("sub/m.o").as_path()));
        assert_eq!(ar.members[0].kind, FileKind::Bitcode);
    }

    #[test]
    fn missing_thin_member_names_archive_and_member() {
        let mut a = b"!<thin>\n".to_vec();
        a.extend(ar_header("gone.o/", 8));
        let err = format!("{:#}", parse_archive(Path::new("/nonexistent/lib.a"), &a).unwrap_err());
        assert!(err.contains("/nonexistent/lib.a") && err.contains("gone.o"), "{err}");
    }
}

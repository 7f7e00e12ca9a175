//! Writes GNU thin archives (`!<thin>`) of native objects, with the symbol
//! index ld.lld needs to pull members from a lazy archive.
//!
//! Written here rather than with `ar_archive_writer`, whose API wants every
//! member's bytes in memory at once: on defconfig that is 2,800 objects,
//! and reading (or mapping: small files are mapped whole by fault-around)
//! them all made up most of kdthin-ld's own peak memory. A thin archive
//! holds only names, sizes and symbols, so each member is opened, its
//! symbols taken, and closed before the next. The bytes are the same as
//! `ar_archive_writer`'s (the tests compare them): deterministic (mtime,
//! uid and gid 0, mode 644), every name in the `//` table, a 32-bit index.

use std::io::{self, Write};
use std::path::Path;

use object::{Object, ObjectSymbol};

/// One member: the name stored (an absolute path, so the archive can be
/// read from any directory), the file's size and its index symbols.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub size: u64,
    pub symbols: Vec<Vec<u8>>,
}

impl Member {
    /// Reads `path`'s symbol table; `name` is what the archive records.
    pub fn from_file(path: &Path, name: String) -> io::Result<Member> {
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        // SAFETY: read-only map of an object nobody rewrites during the
        // link (natives are renamed into place, never edited); dropped
        // before the next member is opened.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Member { name, size, symbols: index_symbols(&map) })
    }
}

/// The symbols llvm-ar puts in the index: global or weak, defined, not a
/// file or section symbol. Not an object file: no symbols, as llvm-ar.
pub fn index_symbols(data: &[u8]) -> Vec<Vec<u8>> {
    let Ok(file) = object::File::parse(data) else { return Vec::new() };
    file.symbols()
        .filter(|s| !matches!(s.kind(), object::SymbolKind::File | object::SymbolKind::Section))
        .filter(|s| s.is_global() && !s.is_undefined())
        .filter_map(|s| s.name_bytes().ok().map(<[u8]>::to_vec))
        .collect()
}

const HEADER: u64 = 60;

/// The whole archive.
pub fn write(w: &mut impl Write, members: &[Member]) -> io::Result<()> {
    let names_len: u64 = members.iter().map(|m| m.name.len() as u64 + 2).sum();
    let names_pad = names_len % 2;
    let num_syms: u64 = members.iter().map(|m| m.symbols.len() as u64).sum();
    let mut sym_names_len: u64 = members.iter().flat_map(|m| &m.symbols).map(|s| s.len() as u64 + 1).sum();
    // llvm-ar writes an index even when no member has a symbol (for old
    // Solaris tools), its string area three NULs; only an archive without
    // members has none.
    let empty_index = !members.is_empty() && num_syms == 0;
    if empty_index {
        sym_names_len = 3;
    }
    let symtab_raw = 4 + 4 * num_syms + sym_names_len;
    let symtab_size = symtab_raw + symtab_raw % 2;
    let index_len = if members.is_empty() { 0 } else { HEADER + symtab_size };
    let names_member = if members.is_empty() { 0 } else { HEADER + names_len + names_pad };
    let first_member = 8 + index_len + names_member;
    if first_member + HEADER * members.len() as u64 >= 1 << 32 {
        return Err(io::Error::other("thin archive too large for a 32-bit symbol index"));
    }

    w.write_all(b"!<thin>\n")?;
    if members.is_empty() {
        return Ok(());
    }
    write!(w, "{:<16}", "/")?;
    rest_of_header(w, 0, symtab_size)?;
    w.write_all(&(num_syms as u32).to_be_bytes())?;
    for (i, m) in members.iter().enumerate() {
        let at = (first_member + HEADER * i as u64) as u32;
        for _ in &m.symbols {
            w.write_all(&at.to_be_bytes())?;
        }
    }
    for s in members.iter().flat_map(|m| &m.symbols) {
        w.write_all(s)?;
        w.write_all(&[0])?;
    }
    if empty_index {
        w.write_all(b"\0\0\0")?;
    }
    w.write_all(&b"\0"[..(symtab_raw % 2) as usize])?;

    write!(w, "{:<48}{:<10}`\n", "//", names_len + names_pad)?;
    for m in members {
        write!(w, "{}/\n", m.name)?;
    }
    w.write_all(&b"\n"[..names_pad as usize])?;
    let mut name_pos = 0;
    for m in members {
        write!(w, "/{name_pos:<15}")?;
        rest_of_header(w, 0o644, m.size)?;
        name_pos += m.name.len() as u64 + 2;
    }
    Ok(())
}

/// mtime, uid, gid (all 0: deterministic), mode, size.
fn rest_of_header(w: &mut impl Write, mode: u32, size: u64) -> io::Result<()> {
    write!(w, "{:<12}{:<6}{:<6}{:<8o}{:<10}`\n", 0, 0, 0, mode, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A small relocatable ELF with the given global, weak, local and
    /// undefined symbols, written with `object`.
    fn elf(globals: &[&str], weak: &[&str], local: &[&str], undef: &[&str]) -> Vec<u8> {
        use object::write::{Object as W, Symbol, SymbolSection};
        use object::{Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolKind, SymbolScope};
        let mut o = W::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        o.add_file_symbol(b"x.c".to_vec());
        let text = o.add_section(vec![], b".text".to_vec(), SectionKind::Text);
        o.append_section_data(text, &[0xc3; 16], 1);
        let mut add = |name: &str, weak: bool, scope: SymbolScope, section: SymbolSection| {
            o.add_symbol(Symbol {
                name: name.as_bytes().to_vec(),
                value: 0,
                size: 1,
                kind: SymbolKind::Text,
                scope,
                weak,
                section,
                flags: SymbolFlags::None,
            });
        };
        for n in globals {
            add(n, false, SymbolScope::Linkage, SymbolSection::Section(text));
        }
        for n in weak {
            add(n, true, SymbolScope::Linkage, SymbolSection::Section(text));
        }
        for n in local {
            add(n, false, SymbolScope::Compilation, SymbolSection::Section(text));
        }
        for n in undef {
            add(n, false, SymbolScope::Unknown, SymbolSection::Undefined);
        }
        o.write().unwrap()
    }

    /// What `ar_archive_writer` (the writer we replaced) makes of the same
    /// members, as link.rs called it.
    fn reference(members: &[(String, Vec<u8>)]) -> Vec<u8> {
        use ar_archive_writer::{write_archive_to_stream, ArchiveKind, NewArchiveMember, DEFAULT_OBJECT_READER};
        let new: Vec<NewArchiveMember> = members
            .iter()
            .map(|(n, d)| NewArchiveMember::new(d.as_slice(), &DEFAULT_OBJECT_READER, n.clone()))
            .collect();
        let mut out = Cursor::new(Vec::new());
        write_archive_to_stream(&mut out, &new, ArchiveKind::Gnu, true, Some(false)).unwrap();
        out.into_inner()
    }

    fn ours(members: &[(String, Vec<u8>)]) -> Vec<u8> {
        let ms: Vec<Member> = members
            .iter()
            .map(|(n, d)| Member { name: n.clone(), size: d.len() as u64, symbols: index_symbols(d) })
            .collect();
        let mut out = Vec::new();
        write(&mut out, &ms).unwrap();
        out
    }

    #[test]
    fn index_takes_defined_globals_and_weaks_only() {
        let d = elf(&["g1", "g2"], &["w"], &["l"], &["u"]);
        assert_eq!(index_symbols(&d), vec![b"g1".to_vec(), b"g2".to_vec(), b"w".to_vec()]);
        assert!(index_symbols(b"not an object").is_empty());
    }

    #[test]
    fn same_bytes_as_ar_archive_writer() {
        let cases: Vec<Vec<(String, Vec<u8>)>> = vec![
            vec![],
            // No symbols at all: an empty index.
            vec![("/abs/empty.o".into(), elf(&[], &[], &["l"], &["u"]))],
            // Odd and even lengths of names and symbol strings, so every
            // padding rule is exercised.
            vec![
                ("/o/a.thinlto-native.o".into(), elf(&["alpha", "b"], &["weak_one"], &["local"], &["ext"])),
                ("/o/dir/bb.o".into(), elf(&["c"], &[], &[], &[])),
                ("/o/dir/ccc.o".into(), elf(&[], &[], &[], &["only_undef"])),
                ("/o/d.o".into(), elf(&["dd", "eee", "ffff"], &[], &[], &[])),
            ],
            vec![("/x.o".into(), elf(&["s"], &[], &[], &[])), ("/yy.o".into(), b"plain data, not ELF".to_vec())],
        ];
        for members in &cases {
            assert_eq!(
                ours(members),
                reference(members),
                "members {:?}",
                members.iter().map(|m| &m.0).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn from_file_reads_size_and_symbols() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.o");
        let data = elf(&["f"], &[], &[], &["g"]);
        std::fs::write(&p, &data).unwrap();
        let m = Member::from_file(&p, "/name".into()).unwrap();
        assert_eq!(m, Member { name: "/name".into(), size: data.len() as u64, symbols: vec![b"f".to_vec()] });
        assert!(Member::from_file(&dir.path().join("missing.o"), "x".into()).is_err());
    }
}

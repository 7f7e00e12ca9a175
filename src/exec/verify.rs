//! Is what a backend left behind really its object?
//!
//! clang does not always say so with its exit status: with an index file it
//! cannot load, or an import that fails, its ThinLTO backend path
//! (clang/lib/CodeGen/BackendUtil.cpp: `EmitBackendOutput`,
//! `runThinLTOBackend`) prints `Error loading index file ...` or
//! `Error running ThinLTO backend: ...` with `errs()`, returns without
//! emitting anything, and clang exits 0 leaving a 0-byte object. Linking
//! that object "works" and silently drops every function of the module.
//!
//! So every backend result (a local compile, a cache entry, a remote
//! worker's output) passes [`NativeCheck::check`] before it is used,
//! installed, cached or uploaded: an ELF relocatable object, for the link's
//! machine, whose headers and sections lie inside the file, and no such
//! diagnostic in what the backend printed. A module the thin-link left
//! unused still yields a valid (empty) ELF object, never an empty file.

use std::fmt;
use std::path::Path;

use object::elf;
use object::read::elf::{ElfFile, FileHeader, SectionHeader};
use object::Endianness;

/// What a backend's native object must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NativeCheck {
    /// `e_machine` of the link (from its `-m` emulation); None accepts any.
    pub machine: Option<u16>,
}

/// Why a backend's result is not usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadNative {
    /// The backend printed a diagnostic that means it did not run.
    Diagnostic(String),
    Unreadable(String),
    Empty,
    NotElf,
    NotRelocatable(u16),
    WrongMachine {
        want: u16,
        got: u16,
    },
    Malformed(String),
}

impl fmt::Display for BadNative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadNative::Diagnostic(line) => write!(f, "the backend reported {line:?}"),
            BadNative::Unreadable(e) => write!(f, "its object cannot be read: {e}"),
            BadNative::Empty => write!(f, "its object is empty (0 bytes)"),
            BadNative::NotElf => write!(f, "its object is not an ELF file"),
            BadNative::NotRelocatable(t) => write!(f, "its object is not relocatable (ELF type {t})"),
            BadNative::WrongMachine { want, got } => {
                write!(f, "its object is for ELF machine {got}, the link is for {want}")
            }
            BadNative::Malformed(e) => write!(f, "its object is malformed: {e}"),
        }
    }
}

/// Lines clang's ThinLTO backend path prints (with `errs()`, not as a
/// diagnostic that would fail the compile) when it returns without code.
const NOT_RUN: [&str; 3] = ["Error loading index file", "Error running ThinLTO backend", "Error loading imported file"];

/// The first line of `output` saying the backend did not run, if any.
pub fn not_run_diagnostic(output: &[u8]) -> Option<String> {
    String::from_utf8_lossy(output)
        .lines()
        .find(|l| NOT_RUN.iter().any(|p| l.trim_start().starts_with(p)))
        .map(|l| l.trim().to_string())
}

impl NativeCheck {
    /// For a link: its `-m` emulation decides the machine.
    pub fn for_emulation(emulation: Option<&str>) -> NativeCheck {
        NativeCheck { machine: emulation.and_then(machine_of_emulation) }
    }

    /// Checks an object's bytes and what its backend printed.
    pub fn check(&self, data: &[u8], output: &[u8]) -> Result<(), BadNative> {
        if let Some(line) = not_run_diagnostic(output) {
            return Err(BadNative::Diagnostic(line));
        }
        self.check_object(data)
    }

    /// Checks a file a backend wrote, and what it printed.
    pub fn check_file(&self, path: &Path, output: &[u8]) -> Result<(), BadNative> {
        if let Some(line) = not_run_diagnostic(output) {
            return Err(BadNative::Diagnostic(line));
        }
        let data = std::fs::read(path).map_err(|e| BadNative::Unreadable(format!("{}: {e}", path.display())))?;
        self.check_object(&data)
    }

    /// An ELF relocatable object for our machine, complete.
    pub fn check_object(&self, data: &[u8]) -> Result<(), BadNative> {
        if data.is_empty() {
            return Err(BadNative::Empty);
        }
        if !data.starts_with(&elf::ELFMAG) {
            return Err(BadNative::NotElf);
        }
        const EI_CLASS: usize = 4;
        let machine = match data.get(EI_CLASS) {
            Some(&elf::ELFCLASS64) => parse::<elf::FileHeader64<Endianness>>(data)?,
            Some(&elf::ELFCLASS32) => parse::<elf::FileHeader32<Endianness>>(data)?,
            _ => return Err(BadNative::Malformed("unknown ELF class".into())),
        };
        match self.machine {
            Some(want) if want != machine => Err(BadNative::WrongMachine { want, got: machine }),
            _ => Ok(()),
        }
    }
}

/// Parses the headers and checks that every section's bytes are in the
/// file (a truncated object fails here). Returns `e_machine`.
fn parse<H: FileHeader<Endian = Endianness>>(data: &[u8]) -> Result<u16, BadNative> {
    let file = ElfFile::<H>::parse(data).map_err(|e| BadNative::Malformed(e.to_string()))?;
    let endian = file.endian();
    let header = file.elf_header();
    let e_type = header.e_type(endian);
    if e_type != elf::ET_REL {
        return Err(BadNative::NotRelocatable(e_type));
    }
    for section in file.elf_section_table().iter() {
        if section.sh_type(endian) == elf::SHT_NOBITS {
            continue;
        }
        let (offset, size): (u64, u64) = (section.sh_offset(endian).into(), section.sh_size(endian).into());
        if offset.checked_add(size).is_none_or(|end| end > data.len() as u64) {
            return Err(BadNative::Malformed(format!(
                "a section extends past the end of the file ({} bytes)",
                data.len()
            )));
        }
    }
    Ok(header.e_machine(endian))
}

/// `e_machine` for an ld.lld emulation (lld/ELF/Driver.cpp `parseEmulation`;
/// a `_fbsd` suffix is ignored there too). None for one we do not know:
/// the check then accepts any machine.
pub fn machine_of_emulation(emulation: &str) -> Option<u16> {
    let e = emulation.strip_suffix("_fbsd").unwrap_or(emulation);
    let m = match e {
        "elf_x86_64" | "elf_amd64" | "elf32_x86_64" => elf::EM_X86_64,
        "elf_i386" => elf::EM_386,
        "elf_iamcu" => elf::EM_IAMCU,
        _ if e.starts_with("aarch64") => elf::EM_AARCH64,
        _ if e.starts_with("armelf") => elf::EM_ARM,
        _ if e.ends_with("riscv") => elf::EM_RISCV,
        "elf64ppc" | "elf64lppc" => elf::EM_PPC64,
        _ if e.starts_with("elf32ppc") || e.starts_with("elf32lppc") => elf::EM_PPC,
        _ if e.ends_with("loongarch") => elf::EM_LOONGARCH,
        _ if e.contains("mips") => elf::EM_MIPS,
        "elf64_s390" => elf::EM_S390,
        "elf64_sparc" => elf::EM_SPARCV9,
        "hexagonelf" => elf::EM_HEXAGON,
        "msp430elf" => elf::EM_MSP430,
        _ => return None,
    };
    Some(m)
}

/// `e_machine` for a target triple's architecture (`x86_64-pc-linux-gnu`).
pub fn machine_of_triple(triple: &str) -> Option<u16> {
    let arch = triple.split('-').next()?;
    let m = match arch {
        "x86_64" => elf::EM_X86_64,
        "i386" | "i486" | "i586" | "i686" => elf::EM_386,
        "aarch64" | "aarch64_be" | "arm64" => elf::EM_AARCH64,
        "riscv64" | "riscv32" => elf::EM_RISCV,
        "powerpc64" | "powerpc64le" | "ppc64" | "ppc64le" => elf::EM_PPC64,
        "powerpc" | "ppc" => elf::EM_PPC,
        "s390x" => elf::EM_S390,
        "loongarch64" | "loongarch32" => elf::EM_LOONGARCH,
        _ if arch.starts_with("arm") || arch.starts_with("thumb") => elf::EM_ARM,
        _ if arch.starts_with("mips") => elf::EM_MIPS,
        _ => return None,
    };
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::write::{Object, StandardSection, Symbol, SymbolSection};
    use object::{Architecture, BinaryFormat, Endianness as E, SymbolFlags, SymbolKind, SymbolScope};

    fn relocatable(arch: Architecture) -> Vec<u8> {
        let mut obj = Object::new(BinaryFormat::Elf, arch, E::Little);
        let text = obj.section_id(StandardSection::Text);
        let off = obj.append_section_data(text, &[0xc3; 16], 16);
        obj.add_symbol(Symbol {
            name: b"f".to_vec(),
            value: off,
            size: 16,
            kind: SymbolKind::Text,
            scope: SymbolScope::Linkage,
            weak: false,
            section: SymbolSection::Section(text),
            flags: SymbolFlags::None,
        });
        obj.write().unwrap()
    }

    const X86: NativeCheck = NativeCheck { machine: Some(elf::EM_X86_64) };

    #[test]
    fn a_real_relocatable_object_passes() {
        assert_eq!(X86.check(&relocatable(Architecture::X86_64), b""), Ok(()));
        // Warnings are not failures.
        assert_eq!(X86.check(&relocatable(Architecture::X86_64), b"warning: unused variable\n"), Ok(()));
        // An empty ELF object (what clang makes for a module the thin-link
        // left unused) is fine: it has headers, just no code.
        let empty = Object::new(BinaryFormat::Elf, Architecture::X86_64, E::Little).write().unwrap();
        assert_eq!(X86.check(&empty, b""), Ok(()));
        assert_eq!(NativeCheck::default().check(&relocatable(Architecture::Aarch64), b""), Ok(()));
    }

    #[test]
    fn an_empty_file_fails() {
        assert_eq!(X86.check(b"", b""), Err(BadNative::Empty));
    }

    #[test]
    fn clangs_exit_0_diagnostics_fail_even_with_an_object() {
        let obj = relocatable(Architecture::X86_64);
        for line in [
            "Error loading index file 'x.thinlto.bc': No such file or directory",
            "Error running ThinLTO backend: Function Import: link error: linking module flags 'EnableSplitLTOUnit'",
            "Error loading imported file '/t/\u{fc}/b.o': No such file or directory",
        ] {
            let out = format!("warning: something\n{line}\n");
            assert_eq!(X86.check(&obj, out.as_bytes()), Err(BadNative::Diagnostic(line.to_string())), "{line}");
        }
        // A source line quoted in a warning is not clang's diagnostic.
        assert_eq!(X86.check(&obj, b"x.c:1: warning: \"Error running\" in a string\n"), Ok(()));
    }

    #[test]
    fn wrong_kind_machine_or_truncation_fails() {
        let obj = relocatable(Architecture::X86_64);
        assert_eq!(X86.check(b"BC\xc0\xde\x35\x14\0\0", b""), Err(BadNative::NotElf));
        let arm = relocatable(Architecture::Aarch64);
        assert_eq!(X86.check(&arm, b""), Err(BadNative::WrongMachine { want: elf::EM_X86_64, got: elf::EM_AARCH64 }));
        let mut exec = obj.clone();
        exec[16] = elf::ET_EXEC as u8;
        assert_eq!(X86.check(&exec, b""), Err(BadNative::NotRelocatable(elf::ET_EXEC)));
        // Cut anywhere past the header: a section or the section table is
        // no longer in the file.
        for cut in [obj.len() - 1, obj.len() / 2, 70] {
            assert!(matches!(X86.check(&obj[..cut], b""), Err(BadNative::Malformed(_))), "cut at {cut}");
        }
        assert!(matches!(X86.check(&obj[..10], b""), Err(BadNative::Malformed(_))));
    }

    #[test]
    fn emulations_name_their_machine() {
        for (emu, m) in [
            ("elf_x86_64", elf::EM_X86_64),
            ("elf_i386", elf::EM_386),
            ("aarch64linux", elf::EM_AARCH64),
            ("aarch64elf", elf::EM_AARCH64),
            ("elf64lriscv", elf::EM_RISCV),
            ("elf32lriscv", elf::EM_RISCV),
            ("armelf_linux_eabi", elf::EM_ARM),
            ("elf64lppc", elf::EM_PPC64),
            ("elf64_s390", elf::EM_S390),
            ("elf64loongarch", elf::EM_LOONGARCH),
            ("elf_x86_64_fbsd", elf::EM_X86_64),
        ] {
            assert_eq!(machine_of_emulation(emu), Some(m), "{emu}");
        }
        assert_eq!(machine_of_emulation("nonsense"), None);
        assert_eq!(machine_of_triple("x86_64-pc-linux-gnu"), Some(elf::EM_X86_64));
        assert_eq!(machine_of_triple("aarch64-linux-gnu"), Some(elf::EM_AARCH64));
        assert_eq!(machine_of_triple("riscv64-unknown-linux-gnu"), Some(elf::EM_RISCV));
        assert_eq!(machine_of_triple("wasm32"), None);
        assert_eq!(NativeCheck::for_emulation(None), NativeCheck::default());
    }

    #[test]
    fn a_missing_file_is_unreadable() {
        assert!(matches!(X86.check_file(Path::new("/nonexistent/kdthin/x.o"), b""), Err(BadNative::Unreadable(_))));
    }
}

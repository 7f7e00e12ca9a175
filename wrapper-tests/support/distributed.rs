//! Proof that a link took kdthin-ld's distributed path, not ld.lld's
//! in-process ThinLTO: a program that just exec'd ld.lld produces the same
//! symbols, so comparing with ld.lld alone proves nothing about us.
//!
//! Three things only the distributed path produces: the `LTO` summary line
//! with one backend per module, a native object beside each bitcode object,
//! and an output made of exactly those natives. The last is checked by
//! content, not by the paths on the final link's command line (which may
//! name private copies of the natives).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use object::{Object, ObjectKind, ObjectSection, ObjectSymbol, SymbolKind};

use super::{native_object, LtoLine, Ran, Tree};

/// One of the fixture's ThinLTO links, as kdthin-ld sees it.
#[derive(Clone, Copy, Debug)]
pub struct LinkSpec {
    /// The `-o` argument, as the LTO line names it.
    pub printed: &'static str,
    /// Where the output ends up (mod/bar.o's recipe renames its `-o`).
    pub file: &'static str,
    /// Bitcode objects the link uses: one backend, one native each.
    pub bitcode: &'static [&'static str],
    /// Inputs that are ELF already (linked as they are).
    pub elf_inputs: &'static [&'static str],
}

pub const VMLINUX_O: LinkSpec = LinkSpec {
    printed: "vmlinux.o",
    file: "vmlinux.o",
    bitcode: super::VMLINUX_BITCODE,
    elf_inputs: &["arch/x86/kernel/head_64.o"],
};
pub const FOO_O: LinkSpec =
    LinkSpec { printed: "mod/foo.o", file: "mod/foo.o", bitcode: super::FOO_BITCODE, elf_inputs: &[] };
/// The single-object module, linked inside its compile recipe.
pub const BAR_O: LinkSpec =
    LinkSpec { printed: "mod/.tmp_bar.o", file: "mod/bar.o", bitcode: &["mod/bar.o"], elf_inputs: &[] };
pub const PROG: LinkSpec = LinkSpec {
    printed: "prog",
    file: "prog",
    bitcode: super::VMLINUX_BITCODE,
    elf_inputs: &["arch/x86/kernel/head_64.o"],
};

/// All of [`assert_lto_line`], [`assert_natives`] and
/// [`assert_made_of_natives`], for a link `ran` ran with the backend cache
/// off (every backend compiled).
#[track_caller]
pub fn assert_distributed(tree: &Tree, ran: &Ran, link: &LinkSpec) {
    assert_lto_line(ran, link, 0);
    assert_natives(tree, link);
    assert_made_of_natives(tree, link);
}

/// `ran` printed exactly one LTO line for the link, counting one backend
/// per bitcode object, `cached` of them from the cache.
#[track_caller]
pub fn assert_lto_line(ran: &Ran, link: &LinkSpec, cached: usize) {
    let n = link.bitcode.len();
    let want = LtoLine {
        output: link.printed.to_string(),
        modules: n,
        cached,
        compiled: n - cached,
        remote: 0,
        whole_link: false,
    };
    assert_eq!(ran.lto_line(link.printed), want, "LTO line of {}\n{}", link.printed, ran.report());
}

/// `<stem>.thinlto-native.o` beside each bitcode object: an x86-64 ELF
/// relocatable object that defines code.
#[track_caller]
pub fn assert_natives(tree: &Tree, link: &LinkSpec) {
    for obj in link.bitcode {
        let native = native_object(obj);
        assert!(tree.exists(&native), "no {native} beside {obj}: the link did not run its backend");
        let data = tree.read(&native);
        let file = parse(&native, &data);
        assert_eq!(file.kind(), ObjectKind::Relocatable, "{native} is not an ELF relocatable object");
        assert_eq!(file.architecture(), object::Architecture::X86_64, "{native}");
        assert!(!functions(&native, &file).is_empty(), "{native} defines no function");
    }
}

/// The output is made of the natives beside the bitcode: every function a
/// native defines is defined in it, and for a relocatable (`-r`) output,
/// with nothing else: its defined globals are exactly those of the natives
/// and the ELF inputs, each function has the native's bytes and every
/// `.text.*` section it has comes from some input (ld.lld's
/// in-process ThinLTO compiles with -ffunction-sections; kdthin-ld's
/// backends keep each object's own flags).
#[track_caller]
pub fn assert_made_of_natives(tree: &Tree, link: &LinkSpec) {
    let out_data = tree.read(link.file);
    let out = parse(link.file, &out_data);
    let out_funcs = functions(link.file, &out);
    let relocatable = out.kind() == ObjectKind::Relocatable;

    let mut input_globals = BTreeSet::new();
    let mut input_sections = BTreeSet::new();
    let mut problems = Vec::new();
    let natives: Vec<String> = link.bitcode.iter().map(|o| native_object(o)).collect();
    for (rel, is_native) in
        natives.iter().map(|n| (n.as_str(), true)).chain(link.elf_inputs.iter().map(|e| (*e, false)))
    {
        let data = tree.read(rel);
        let file = parse(rel, &data);
        input_globals.extend(defined_globals(&file));
        input_sections.extend(file.sections().filter_map(|s| s.name().ok().map(str::to_string)));
        if !is_native {
            continue;
        }
        for (name, code) in functions(rel, &file) {
            match out_funcs.get(&name) {
                None => problems.push(format!("{rel} defines {name}, {} does not", link.file)),
                Some(theirs) if relocatable && *theirs != code => {
                    problems.push(format!("{name}: its bytes in {} are not those in {rel}", link.file))
                }
                Some(_) => {}
            }
        }
    }
    let out_globals = defined_globals(&out);
    if relocatable {
        for g in out_globals.difference(&input_globals) {
            problems.push(format!("{} defines {g}, which no native object or ELF input defines", link.file));
        }
        for s in out.sections().filter_map(|s| s.name().ok().map(str::to_string)) {
            if s.starts_with(".text.") && !input_sections.contains(&s) {
                problems.push(format!("{} has section {s}, which no native object or ELF input has", link.file));
            }
        }
        // (An executable's symbol table makes hidden symbols local.)
        for g in input_globals.difference(&out_globals) {
            problems.push(format!("{g} is defined by an input but not by {}", link.file));
        }
    }
    assert!(
        problems.is_empty(),
        "{} (in {}) is not the link of the native objects beside its bitcode:\n  {}",
        link.file,
        tree.root().display(),
        problems.join("\n  ")
    );
}

#[track_caller]
fn parse<'d>(rel: &str, data: &'d [u8]) -> object::File<'d> {
    object::File::parse(data).unwrap_or_else(|e| panic!("{rel}: not an object file: {e}"))
}

/// Names of defined, non-local symbols.
fn defined_globals(file: &object::File) -> BTreeSet<String> {
    file.symbols()
        .filter(|s| s.is_definition() && !s.is_local())
        .filter_map(|s| s.name().ok().map(str::to_string))
        .collect()
}

/// Each defined function with a size and a name unique in the file: its
/// bytes, as they stand in its section.
#[track_caller]
fn functions(rel: &str, file: &object::File) -> BTreeMap<String, Vec<u8>> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut code = BTreeMap::new();
    for sym in file.symbols().filter(|s| s.is_definition() && s.kind() == SymbolKind::Text && s.size() > 0) {
        let Ok(name) = sym.name() else { continue };
        *seen.entry(name.to_string()).or_default() += 1;
        let Some(index) = sym.section_index() else { continue };
        let section = file.section_by_index(index).unwrap_or_else(|e| panic!("{rel}: {name}: {e}"));
        let data = section.data().unwrap_or_else(|e| panic!("{rel}: {name}: {e}"));
        let start = (sym.address() - section.address()) as usize;
        let bytes = data
            .get(start..start + sym.size() as usize)
            .unwrap_or_else(|| panic!("{rel}: {name} lies outside its section"))
            .to_vec();
        code.insert(name.to_string(), bytes);
    }
    // Two static functions of the same name: which is which is unknowable.
    code.retain(|name, _| seen[name] == 1);
    code
}

/// Where `function`'s first byte lies in the file `path`, to break it.
pub fn function_file_offset(path: &Path, function: &str) -> u64 {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let file = parse(&path.display().to_string(), &data);
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok(function) && s.is_definition())
        .unwrap_or_else(|| panic!("{}: no {function}", path.display()));
    let section = file.section_by_index(sym.section_index().unwrap()).unwrap();
    let (offset, _) = section.file_range().unwrap();
    offset + sym.address() - section.address()
}

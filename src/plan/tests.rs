use super::*;
use crate::input::{Archive, Member};

pub(crate) fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

fn thin(path: &str, members: &[(&str, FileKind)]) -> (PathBuf, FileFacts) {
    let a = Archive {
        path: path.into(),
        thin: true,
        members: members
            .iter()
            .map(|(p, k)| Member {
                name: p.rsplit('/').next().unwrap().into(),
                path: Some(p.into()),
                data: None,
                kind: *k,
            })
            .collect(),
    };
    (path.into(), FileFacts::Archive(a))
}

pub(crate) fn plan_for(argv: &[&str], facts: Vec<(PathBuf, FileFacts)>) -> Plan {
    let cl = CommandLine::parse(&os(argv)).unwrap();
    let inputs = cl.inputs().unwrap();
    plan(&cl, &inputs, &facts.into_iter().collect(), Path::new("/w"), Path::new("/w/idx"))
}

pub(crate) const BC: FileKind = FileKind::Bitcode;
const ELF: FileKind = FileKind::Elf;

const VMLINUX_O: &[&str] = &[
    "-m",
    "elf_x86_64",
    "-mllvm",
    "-import-instr-limit=5",
    "-z",
    "noexecstack",
    "-r",
    "-o",
    "vmlinux.o",
    "-T",
    ".tmp_initcalls.lds",
    "--whole-archive",
    "vmlinux.a",
    "--no-whole-archive",
    "--start-group",
    "lib/lib.a",
    "--end-group",
];

fn vmlinux_facts() -> Vec<(PathBuf, FileFacts)> {
    vec![
        thin("vmlinux.a", &[("init/main.o", BC), ("arch/x86/entry/entry_64.o", ELF), ("kernel/fork.o", BC)]),
        thin("lib/lib.a", &[("lib/string.o", BC), ("lib/clear_page.o", ELF)]),
    ]
}

#[test]
fn native_links_pass_through_silently() {
    let p = plan_for(&["-o", "vmlinux", "vmlinux.o", "-T", "x.lds"], vec![("vmlinux.o".into(), FileFacts::Plain(ELF))]);
    assert_eq!(p, Plan::Passthrough(Passthrough::NoBitcode));
    assert_eq!(plan_for(&["--version"], vec![]), Plan::Passthrough(Passthrough::NoBitcode));
}

#[test]
fn vmlinux_o_thin_link_expands_thin_archives() {
    let Plan::Distribute(d) = plan_for(VMLINUX_O, vmlinux_facts()) else { panic!("not distributed") };
    assert_eq!(
        d.thin_link,
        os(&[
            "-m",
            "elf_x86_64",
            "-mllvm",
            "-import-instr-limit=5",
            "-z",
            "noexecstack",
            "-r",
            "-o",
            "/w/vmlinux.o", // -o: only probed, in the work directory
            "-T",
            ".tmp_initcalls.lds",
            "--whole-archive",
            // whole-archive members: plain objects, in member order
            "init/main.o",
            "arch/x86/entry/entry_64.o",
            "kernel/fork.o",
            "--no-whole-archive",
            // group markers gone, lazy members between --start-lib/--end-lib
            "--start-lib",
            "lib/string.o",
            "lib/clear_page.o",
            "--end-lib",
            "--thinlto-index-only=/w/thinlto.list",
            "--thinlto-emit-imports-files",
            "--thinlto-prefix-replace=;/w/idx/",
        ])
    );
    let names: Vec<_> = d.modules.iter().map(|m| m.path.to_str().unwrap()).collect();
    assert_eq!(names, ["init/main.o", "kernel/fork.o", "lib/string.o"]);
    let m = &d.modules[0];
    assert_eq!(m.index, PathBuf::from("/w/idx/init/main.o.thinlto.bc"));
    assert_eq!(m.imports, PathBuf::from("/w/idx/init/main.o.imports"));
    assert_eq!(m.native, PathBuf::from("init/main.thinlto-native.o"));
    assert_eq!(d.backend_extra, os(&["-mllvm", "-import-instr-limit=5"]));
    // `-m elf_x86_64`: every native must be an x86_64 object.
    assert_eq!(d.native_check.machine, Some(object::elf::EM_X86_64));
    // Both archives are replaced in the final link, at their own positions.
    assert_eq!(d.final_subst, vec![(7, FinalSubst::Archive(0)), (10, FinalSubst::Archive(1))]);
    assert_eq!(
        d.new_archives[0].members,
        vec![NewMember::Module(0), NewMember::Native("arch/x86/entry/entry_64.o".into()), NewMember::Module(1)]
    );
    assert_eq!(d.new_archives[1].members, vec![NewMember::Module(2), NewMember::Native("lib/clear_page.o".into())]);
    assert!(d.new_archives[0].path.starts_with("/w"));
    assert!(d.extract.is_empty());
}

#[test]
fn plain_bitcode_and_response_files() {
    let dir = tempfile::tempdir().unwrap();
    let mod_file = dir.path().join("foo.mod");
    std::fs::write(&mod_file, "drivers/foo/a.o drivers/foo/b.o\n").unwrap();
    let at = format!("@{}", mod_file.display());
    let p = plan_for(
        &["-r", "-o", "drivers/foo/foo.o", &at],
        vec![("drivers/foo/a.o".into(), FileFacts::Plain(BC)), ("drivers/foo/b.o".into(), FileFacts::Plain(ELF))],
    );
    let Plan::Distribute(d) = p else { panic!("not distributed") };
    assert_eq!(d.modules.len(), 1);
    assert_eq!(d.modules[0].native, PathBuf::from("drivers/foo/a.thinlto-native.o"));
    // The thin-link sees the expanded response file; its -o (which ld.lld
    // only probes) is in the work directory.
    assert_eq!(&d.thin_link[..5], &os(&["-r", "-o", "/w/foo.o", "drivers/foo/a.o", "drivers/foo/b.o"])[..]);
}

#[test]
fn regular_archives_with_bitcode_are_extracted() {
    let ar = Archive {
        path: "x/libfoo.a".into(),
        thin: false,
        members: vec![
            Member { name: "a.o".into(), path: None, data: Some((68, 100)), kind: BC },
            Member { name: "b.o".into(), path: None, data: Some((236, 50)), kind: ELF },
        ],
    };
    let Plan::Distribute(d) = plan_for(
        &["-o", "out", "main.o", "x/libfoo.a"],
        vec![("main.o".into(), FileFacts::Plain(BC)), ("x/libfoo.a".into(), FileFacts::Archive(ar))],
    ) else {
        panic!("not distributed")
    };
    assert_eq!(
        d.extract,
        vec![
            ("x/libfoo.a".into(), (68, 100), PathBuf::from("/w/ar/0/0/a.o")),
            ("x/libfoo.a".into(), (236, 50), PathBuf::from("/w/ar/0/1/b.o")),
        ]
    );
    assert!(matches!(d.modules[1].origin, Origin::Extracted { .. }));
    assert_eq!(d.modules[1].native, PathBuf::from("/w/ar/0/0/a.thinlto-native.o"));
    assert!(d.thin_link.windows(4).any(|w| w == os(&["--start-lib", "/w/ar/0/0/a.o", "/w/ar/0/1/b.o", "--end-lib"])));
}

#[test]
fn refuses_what_it_cannot_reproduce() {
    let bc = || vec![("a.o".into(), FileFacts::Plain(BC))];
    let reason = |argv: &[&str]| match plan_for(argv, bc()) {
        Plan::Passthrough(Passthrough::Unsupported(why)) => {
            assert_eq!(why.category(), "command-line");
            why.to_string()
        }
        other => panic!("expected passthrough for {argv:?}, got {other:?}"),
    };
    assert!(reason(&["-o", "x", "a.o", "--thinlto-index-only=l"]).contains("thinlto-index-only"));
    assert!(reason(&["-o", "x", "a.o", "-plugin-opt=thinlto-index-only"]).contains("thinlto-index-only"));
    assert!(reason(&["-o", "x", "a.o", "--lto-emit-asm"]).contains("lto-emit-asm"));
    assert!(reason(&["-o", "x", "a.o", "-plugin-opt=emit-llvm"]).contains("emit-llvm"));
    assert!(reason(&["-o", "x", "a.o", "a.o"]).contains("appears twice"));
}

#[test]
fn link_codegen_options_reach_backends() {
    let Plan::Distribute(d) = plan_for(
        &[
            "-o",
            "x",
            "a.o",
            "-mllvm",
            "-foo=1",
            "--lto-O3",
            "-plugin-opt=-bar",
            "--plugin-opt=mcpu=znver3",
            "--thinlto-jobs=4",
        ],
        vec![("a.o".into(), FileFacts::Plain(BC))],
    ) else {
        panic!("not distributed")
    };
    // Not clang's `-mcpu=`, which clang ignores on x86 without a word.
    assert_eq!(
        d.backend_extra,
        os(&["-mllvm", "-foo=1", "-O3", "-mllvm", "-bar", "-Xclang", "-target-cpu", "-Xclang", "znver3"])
    );
}

#[test]
fn native_names_follow_upstream() {
    assert_eq!(native_beside(Path::new("kernel/fork.o")), PathBuf::from("kernel/fork.thinlto-native.o"));
    assert_eq!(native_beside(Path::new("a.o")), PathBuf::from("a.thinlto-native.o"));
}

#[test]
fn non_ascii_bitcode_paths_link_in_process() {
    // clang's backends fail to import from them (exit 0, "Error loading
    // imported file"): the link must not be distributed.
    let p = plan_for(
        &["-r", "-o", "out.o", "\u{fc}/a.o", "b.o"],
        vec![("\u{fc}/a.o".into(), FileFacts::Plain(BC)), ("b.o".into(), FileFacts::Plain(BC))],
    );
    match p {
        Plan::Passthrough(Passthrough::Unsupported(why)) => {
            assert!(why.detail().contains("not an ASCII path"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn shared_objects_stay_with_ld_lld() {
    // The kernel's vDSOs: `-shared` with a version script (riscv 6.12's
    // are ThinLTO bitcode).
    for flag in ["-shared", "--shared", "-Bshareable"] {
        let p = plan_for(
            &["-m", "elf64lriscv", flag, "-T", "vdso.lds", "-o", "vdso.so.dbg", "a.o", "b.o"],
            vec![("a.o".into(), FileFacts::Plain(BC)), ("b.o".into(), FileFacts::Plain(BC))],
        );
        assert_eq!(p, Plan::Passthrough(Passthrough::SharedObject), "{flag}");
    }
}

//! Link-level codegen options reach every backend, in clang's spelling, as
//! in-process ld.lld applies them (issue 13). Each test links the
//! fixture's vmlinux.o once with ld.lld and once with kdthin-ld, the same
//! extra options on both, and checks that kdthin-ld's link was distributed
//! (an exec of ld.lld would pass any comparison of outputs).

use std::ffi::OsString;

use crate::support::distributed::assert_lto_line;
use crate::support::*;

/// vmlinux.o linked by ld.lld (renamed to `vmlinux.ref.o`) and by
/// kdthin-ld, both with `extra` appended; kdthin-ld's run is returned.
fn link_both(t: &Tree, extra: &[&str], envs: &[(&str, &std::ffi::OsStr)]) -> Ran {
    t.make(Linker::Lld, &["objects"]).ok();
    let with = |linker| {
        let mut argv = t.link_argv("vmlinux.o", linker);
        argv.extend(extra.iter().map(OsString::from));
        argv
    };
    t.run_linker(&with(Linker::Lld), &[]).ok();
    std::fs::rename(t.path("vmlinux.o"), t.path("vmlinux.ref.o")).unwrap();
    let ran = t.run_linker(&with(Linker::Kdthin), envs).ok();
    assert_lto_line(&ran, &VMLINUX_O, 0);
    ran
}

fn count(sections: &[String], name: &str) -> usize {
    sections.iter().filter(|s| *s == name).count()
}

/// Was in the "thin-link only" list and dropped: in-process ld.lld's
/// output had `.llvm_bb_addr_map` sections, kdthin-ld's none.
#[test]
fn basic_block_address_map_reaches_every_backend() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    link_both(&t, &["--lto-basic-block-address-map"], &[]);
    let reference = section_names(&t.path("vmlinux.ref.o"));
    assert!(count(&reference, ".llvm_bb_addr_map") > 0, "ld.lld's own output has no .llvm_bb_addr_map: {reference:?}");
    let ours = section_names(&t.path("vmlinux.o"));
    assert!(count(&ours, ".llvm_bb_addr_map") > 0, "kdthin-ld's vmlinux.o has no .llvm_bb_addr_map: {ours:?}");
    // Each backend got it, not just one.
    for obj in VMLINUX_BITCODE {
        let native = native_object(obj);
        let s = section_names(&t.path(&native));
        assert!(count(&s, ".llvm_bb_addr_map") > 0, "{native} has no .llvm_bb_addr_map: {s:?}");
    }
}

/// `--no-` after it: the last one wins, as in ld.lld.
#[test]
fn basic_block_address_map_last_one_wins() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    link_both(&t, &["--lto-basic-block-address-map", "--no-lto-basic-block-address-map"], &[]);
    for out in ["vmlinux.ref.o", "vmlinux.o"] {
        let s = section_names(&t.path(out));
        assert_eq!(count(&s, ".llvm_bb_addr_map"), 0, "{out}: {s:?}");
    }
}

/// riscv kernels put `-mllvm -mattr=+c -mllvm -mattr=+relax` on every LTO
/// link; clang rejects `-mllvm -mattr=` ("Unknown command line argument"),
/// so passing it through failed every backend. The x86 equivalent, as
/// clang spells a target feature.
#[test]
fn mllvm_mattr_becomes_a_target_feature() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    let ran = link_both(&t, &["-mllvm", "-mattr=+avx2,+bmi2"], &[("KDTHIN_VERBOSE", "1".as_ref())]);
    // (Where the verbose lines go is not this test's business.)
    let printed = format!("{}{}", ran.stdout, ran.stderr);
    let backends: Vec<&str> = printed.lines().filter(|l| l.contains("-fthinlto-index=")).collect();
    assert_eq!(backends.len(), VMLINUX_BITCODE.len(), "one backend command per module\n{}", ran.report());
    for b in backends {
        assert!(b.contains("-Xclang -target-feature -Xclang +avx2 -Xclang -target-feature -Xclang +bmi2"), "{b}");
        assert!(!b.contains("-mattr"), "{b}");
    }
    assert_same_lines(
        "defined globals of vmlinux.o",
        &defined_globals(&t.path("vmlinux.ref.o")),
        &defined_globals(&t.path("vmlinux.o")),
    );
}

/// An option with no per-backend spelling: the link runs in-process, and
/// one line names the option.
#[test]
fn an_option_without_a_spelling_falls_back_with_one_line() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    let mut argv = t.link_argv("vmlinux.o", Linker::Kdthin);
    argv.extend(["-mllvm", "-frame-pointer=all"].map(OsString::from));
    let ran = t.run_linker(&argv, &[]).ok();
    let lines: Vec<&str> = ran.stderr.lines().filter(|l| l.contains("linking in-process")).collect();
    assert_eq!(lines.len(), 1, "{}", ran.report());
    assert!(lines[0].contains("-frame-pointer=all"), "{}", lines[0]);
    assert!(!ran.stdout.contains("LTO "), "{}", ran.report());
}

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
    link_both_built(t, extra, envs)
}

/// [`link_both`] of objects already built.
fn link_both_built(t: &Tree, extra: &[&str], envs: &[(&str, &std::ffi::OsStr)]) -> Ran {
    link_lld(t, extra, "vmlinux.ref.o");
    let ran = t.run_linker(&with_extra(t, Linker::Kdthin, extra), envs).ok();
    assert_lto_line(&ran, &VMLINUX_O, 0);
    ran
}

/// vmlinux.o linked by ld.lld with `extra` appended, renamed to `to`.
fn link_lld(t: &Tree, extra: &[&str], to: &str) {
    t.run_linker(&with_extra(t, Linker::Lld, extra), &[]).ok();
    std::fs::rename(t.path("vmlinux.o"), t.path(to)).unwrap();
}

fn with_extra(t: &Tree, linker: Linker, extra: &[&str]) -> Vec<OsString> {
    let mut argv = t.link_argv("vmlinux.o", linker);
    argv.extend(extra.iter().map(OsString::from));
    argv
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

/// scripts/Makefile.autofdo (6.13+) with CONFIG_LTO_CLANG_THIN, on the
/// compiles and on the ThinLTO link, `autofdo.prof` standing for
/// CLANG_AUTOFDO_PROFILE (-gline-tables-only is its -gmlt).
const AUTOFDO_KCFLAGS: &str = "-fdebug-info-for-profiling -mllvm -enable-fs-discriminator=true \
    -mllvm -improved-fs-discriminator=true -gline-tables-only -fprofile-sample-use=compile.prof \
    -ffunction-sections -fsplit-machine-functions";
const AUTOFDO_LDFLAGS: &[&str] = &[
    "--mllvm=-enable-fs-discriminator=true",
    "--mllvm=-improved-fs-discriminator=true",
    "-plugin-opt=thinlto",
    "-plugin-opt=-split-machine-functions",
];
const LTO_SAMPLE_PROFILE: &str = "--lto-sample-profile=autofdo.prof";

/// A sample profile of kernel/printk.c's printk_num (line 10): hot, and
/// its `v < 0` branch (lines 19-20, offsets 9-10) never taken. Offsets are
/// lines from the function's first.
const PRINTK_NUM_PROFILE: &str = "\
printk_num:100000:5000
 0: 5000
 6: 5000
 7: 5000
 8: 5000
 9: 0
 10: 0
 12: 5000
 13: 5000
 14: 5000
 15: 5000
";

/// `llvm-objdump -d` of `rel` without its first line (which names the file).
fn disassembly(t: &Tree, rel: &str) -> Vec<String> {
    let ran = run(std::process::Command::new(OBJDUMP).arg("-d").arg(t.path(rel))).ok();
    ran.stdout.lines().skip_while(|l| !l.contains("file format")).skip(1).map(str::to_string).collect()
}

/// AutoFDO: the link's sample profile reaches every backend and changes
/// code as in-process ld.lld's does. Compared with ld.lld's output with
/// the profile (equal) and without it (different: printk_num is hot, in
/// `.text.hot.printk_num`, its cold branch moved to the end), so a
/// kdthin-ld that dropped the profile fails, as does one whose backends
/// load it differently (clang's driver turns on profile inference, lld
/// does not: then -split-machine-functions split printk_num).
///
/// The compiles use a profile too, one that matches nothing: clang marks
/// functions for the backend's profile loader only in a compile with a
/// profile, and this way only the link's profile can change code (the
/// kernel passes the same file to both, which would hide a dropped link
/// option: the backends also get the compile's flags).
#[test]
fn autofdo_sample_profile_changes_code_as_in_process() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    t.write("compile.prof", "no_such_function:1:1\n 0: 1\n");
    t.write("autofdo.txt", PRINTK_NUM_PROFILE);
    // The binary format of real profiles (`llvm-profdata merge` of perf data).
    run(std::process::Command::new(PROFDATA).current_dir(t.root()).args([
        "merge",
        "--sample",
        "--extbinary",
        "autofdo.txt",
        "-o",
        "autofdo.prof",
    ]))
    .ok();
    t.make_with(Linker::Lld, &["objects"], &[("KCFLAGS", AUTOFDO_KCFLAGS.as_ref())]).ok();
    assert!(
        String::from_utf8_lossy(&t.read("kernel/.printk.o.cmd")).contains("-fprofile-sample-use=compile.prof"),
        "KCFLAGS did not reach the compiles"
    );
    link_lld(&t, AUTOFDO_LDFLAGS, "vmlinux.noprof.o");
    let mut with_profile = AUTOFDO_LDFLAGS.to_vec();
    with_profile.push(LTO_SAMPLE_PROFILE);
    link_both_built(&t, &with_profile, &[]);

    let hot = ".text.hot.printk_num";
    let without = section_names(&t.path("vmlinux.noprof.o"));
    assert_eq!(count(&without, hot), 0, "without the profile, ld.lld's output has {hot}: {without:?}");
    let reference = section_names(&t.path("vmlinux.ref.o"));
    assert_eq!(count(&reference, hot), 1, "the profile did not make ld.lld's printk_num hot: {reference:?}");
    let ours = section_names(&t.path("vmlinux.o"));
    assert_eq!(count(&ours, hot), 1, "kdthin-ld's vmlinux.o has no {hot}: {ours:?}");
    assert_ne!(disassembly(&t, "vmlinux.noprof.o"), disassembly(&t, "vmlinux.ref.o"));
    assert_same_lines("disassembly of vmlinux.o", &disassembly(&t, "vmlinux.ref.o"), &disassembly(&t, "vmlinux.o"));
}

//! kdthin-ld against ld.lld on the same sources: same symbols, same program
//! output, native objects next to the bitcode, nothing else touched. Each
//! build also proves that every link took the distributed path (see
//! support/distributed.rs): the same symbols alone would pass a kdthin-ld
//! that just exec'd ld.lld.

use std::panic::AssertUnwindSafe;

use crate::support::distributed::{assert_lto_line, assert_made_of_natives, assert_natives, function_file_offset};
use crate::support::*;

/// Two fresh builds of the fixture, one with ld.lld (the reference) and one
/// with kdthin-ld as LD. The kdthin-ld build's link steps are checked to
/// change nothing but link products, and each to have been distributed.
struct Pair {
    reference: Tree,
    /// What the reference's `make all` printed.
    reference_ran: Ran,
    ours: Tree,
}

fn build_pair(format: CmdFormat) -> Pair {
    let reference = Tree::new(format);
    let reference_ran = reference.make(Linker::Lld, &["all"]).ok();
    let ours = Tree::new(format);
    // `objects` already runs LD once: mod/bar.o, a single-object module.
    let objects = ours.make(Linker::Kdthin, &["objects"]).ok();
    assert_distributed(&ours, &objects, &BAR_O);
    let before = ours.snapshot();
    let all = ours.make(Linker::Kdthin, &["all"]).ok();
    ours.snapshot().assert_only_changes(&before, is_link_product);
    for link in [VMLINUX_O, FOO_O, PROG] {
        assert_distributed(&ours, &all, &link);
    }
    assert_no_litter(&ours);
    Pair { reference, reference_ran, ours }
}

/// Panics unless `check` does: a check of the distributed path that cannot
/// fail proves nothing.
#[track_caller]
fn assert_fails(what: &str, check: impl FnOnce()) {
    let caught = std::panic::catch_unwind(AssertUnwindSafe(check));
    assert!(caught.is_err(), "{what}: the check passed, so it cannot tell");
}

#[test]
fn vmlinux_o_has_the_same_symbols() {
    require_toolchain!();
    let p = build_pair(CmdFormat::Savedcmd);
    assert!(is_elf(&p.ours.path("vmlinux.o")));
    assert_same_lines(
        "defined globals of vmlinux.o",
        &defined_globals(&p.reference.path("vmlinux.o")),
        &defined_globals(&p.ours.path("vmlinux.o")),
    );
}

#[test]
fn modules_have_the_same_symbols() {
    require_toolchain!();
    let p = build_pair(CmdFormat::Savedcmd);
    // mod/foo.o: multi-object, linked from a response file. mod/bar.o:
    // single-object, linked before its .cmd file exists.
    for module in ["mod/foo.o", "mod/bar.o"] {
        assert!(is_elf(&p.ours.path(module)), "{module} should be ELF");
        assert_same_lines(
            &format!("defined globals of {module}"),
            &defined_globals(&p.reference.path(module)),
            &defined_globals(&p.ours.path(module)),
        );
    }
}

#[test]
fn prog_prints_the_same() {
    require_toolchain!();
    let p = build_pair(CmdFormat::Savedcmd);
    assert_eq!(p.reference.run_program("prog"), PROG_OUTPUT, "reference prog");
    assert_eq!(p.ours.run_program("prog"), PROG_OUTPUT, "kdthin-ld's prog");
}

#[test]
fn native_objects_sit_next_to_bitcode() {
    require_toolchain!();
    let p = build_pair(CmdFormat::Savedcmd);
    for obj in VMLINUX_BITCODE.iter().chain(FOO_BITCODE) {
        assert!(is_bitcode(&p.ours.path(obj)), "{obj} should still be bitcode");
        let native = native_object(obj);
        assert!(p.ours.exists(&native), "no {native} next to {obj}");
        assert!(is_elf(&p.ours.path(&native)), "{native} is not ELF");
    }
}

#[test]
fn backends_get_each_objects_own_flags() {
    require_toolchain!();
    let p = build_pair(CmdFormat::Savedcmd);
    // -ffunction-sections is only in kernel/sched.o's .cmd, and bitcode
    // does not record it.
    let sections = section_names(&p.ours.path("kernel/sched.thinlto-native.o"));
    assert!(
        sections.iter().any(|s| s == ".text.sched_scale"),
        "kernel/sched.o's backend did not get -ffunction-sections: {sections:?}"
    );
    // -O2 (from each .cmd) makes the backend inline what the thin link
    // imported; at clang's default -O0 the calls would stay.
    for (obj, callee) in [("init/main.o", "sched_scale"), ("init/main.o", "sched_ticks"), ("mm/slab.o", "sched_scale")]
    {
        let native = native_object(obj);
        let undef = undefined_symbols(&p.ours.path(&native));
        assert!(!undef.iter().any(|s| s == callee), "{native} still calls {callee}: {undef:?}");
    }
}

#[test]
fn cmd_files_in_6_1_format() {
    require_toolchain!();
    let p = build_pair(CmdFormat::Cmd);
    assert_same_lines(
        "defined globals of vmlinux.o",
        &defined_globals(&p.reference.path("vmlinux.o")),
        &defined_globals(&p.ours.path("vmlinux.o")),
    );
    assert_eq!(p.ours.run_program("prog"), PROG_OUTPUT);
    for obj in VMLINUX_BITCODE {
        assert!(p.ours.exists(&native_object(obj)), "no native object for {obj}: .cmd not used?");
    }
}

#[test]
fn rebuild_after_editing_a_source() {
    require_toolchain!();
    let p = build_pair(CmdFormat::Savedcmd);
    let mut rebuilt = Vec::new();
    for (tree, linker) in [(&p.reference, Linker::Lld), (&p.ours, Linker::Kdthin)] {
        tree.edit("kernel/sched.c", |s| s.replace("return x * SCALE;", "return x * SCALE + 1000;"));
        rebuilt.push(tree.make(linker, &["all"]).ok());
    }
    // Relinked from the new native of kernel/sched.o (and the others
    // recompiled: the cache is off).
    for link in [VMLINUX_O, PROG] {
        assert_distributed(&p.ours, &rebuilt[1], &link);
    }
    let out = p.ours.run_program("prog");
    assert!(out.contains("sched_scale(7) = 1021\n"), "stale code in prog:\n{out}");
    assert_eq!(out, p.reference.run_program("prog"));
    assert_same_lines(
        "defined globals of vmlinux.o",
        &defined_globals(&p.reference.path("vmlinux.o")),
        &defined_globals(&p.ours.path("vmlinux.o")),
    );
    assert_no_litter(&p.ours);
}

#[test]
fn save_temps_keeps_the_work_dir() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    let ran = t.link("vmlinux.o", Linker::Kdthin, &[("KDTHIN_SAVE_TEMPS", "1".as_ref())]).ok();
    assert_distributed(&t, &ran, &VMLINUX_O);
    assert!(!t.work_dirs().is_empty(), "KDTHIN_SAVE_TEMPS=1 left no .tmp_kdthin* in the tree");
    // Wherever they are, the kept directories hold what the backends were
    // run from: the thin-link's module list and each module's index and
    // imports files (the lazy lib/unused.o gets a "skip" index too).
    let kept: Vec<std::path::PathBuf> = ran
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("kdthin-ld: work files kept in "))
        .map(|d| t.root().join(d))
        .collect();
    assert!(!kept.is_empty(), "no `work files kept in` line\n{}", ran.report());
    let mut files = Vec::new();
    for dir in &kept {
        assert!(dir.is_dir(), "{} was said to be kept, but is not a directory\n{}", dir.display(), ran.report());
        files.extend(Snapshot::take(dir).paths().map(|p| dir.join(p)));
    }
    let find = |suffix: &str| files.iter().find(|f| f.to_string_lossy().ends_with(suffix)).cloned();
    let list = find("/thinlto.list").unwrap_or_else(|| panic!("no thinlto.list kept: {files:?}"));
    let list = std::fs::read_to_string(&list).unwrap();
    for obj in VMLINUX_BITCODE {
        assert!(list.lines().any(|l| l.ends_with(&format!("/{obj}"))), "{obj} not in the kept thinlto.list:\n{list}");
    }
    for obj in VMLINUX_BITCODE.iter().chain(&["lib/unused.o"]) {
        let index = find(&format!("/{obj}.thinlto.bc")).unwrap_or_else(|| panic!("no index of {obj} kept: {files:?}"));
        assert!(is_bitcode(&index), "{} is not a ThinLTO index (bitcode)", index.display());
        find(&format!("/{obj}.imports")).unwrap_or_else(|| panic!("no imports list of {obj} kept: {files:?}"));
    }
}

/// The checks build_pair makes of every link, each shown to fail on a
/// link that did not go through kdthin-ld's backends.
#[test]
fn distribution_checks_catch_an_in_process_link() {
    require_toolchain!();
    let p = build_pair(CmdFormat::Savedcmd);
    let links = [VMLINUX_O, FOO_O, BAR_O, PROG];

    // kdthin-ld as a plain exec of ld.lld: no LTO line, no natives.
    for link in &links {
        assert_fails(&format!("LTO line of ld.lld's {}", link.printed), || assert_lto_line(&p.reference_ran, link, 0));
        assert_fails(&format!("natives of ld.lld's {}", link.file), || assert_natives(&p.reference, link));
    }

    // Backends run and natives installed, but the final link still does
    // in-process ThinLTO of the bitcode: ld.lld's outputs beside our
    // natives. (For the executable only the LTO line can tell: its
    // sections are merged and its code relocated.)
    let inproc = Tree::copy_of(&p.reference);
    for obj in VMLINUX_BITCODE.iter().chain(FOO_BITCODE).chain(&["mod/bar.o"]) {
        let native = native_object(obj);
        inproc.write(&native, p.ours.read(&native));
    }
    for link in [VMLINUX_O, FOO_O, BAR_O] {
        assert_natives(&inproc, &link);
        assert_fails(&format!("in-process {} with natives beside it", link.file), || {
            assert_made_of_natives(&inproc, &link)
        });
    }

    // The native beside the bitcode is not the one linked: one byte of a
    // function changed, or another object's native in its place.
    let sched = native_object("kernel/sched.o");
    let original = p.ours.read(&sched);
    let at = function_file_offset(&p.ours.path(&sched), "sched_scale") as usize;
    let mut flipped = original.clone();
    flipped[at] ^= 0xff;
    p.ours.write(&sched, &flipped);
    assert_fails("a changed byte in sched_scale", || assert_made_of_natives(&p.ours, &VMLINUX_O));
    p.ours.write(&sched, p.ours.read(&native_object("kernel/printk.o")));
    assert_fails("printk's native as sched's", || assert_made_of_natives(&p.ours, &VMLINUX_O));
    p.ours.write(&sched, &original);
    assert_made_of_natives(&p.ours, &VMLINUX_O);
}

//! kdthin-ld against ld.lld on the same sources: same symbols, same program
//! output, native objects next to the bitcode, nothing else touched.

use crate::support::*;

/// Two fresh builds of the fixture, one with ld.lld (the reference) and one
/// with kdthin-ld as LD. The kdthin-ld build's link steps are checked to
/// change nothing but link products.
struct Pair {
    reference: Tree,
    ours: Tree,
}

fn build_pair(format: CmdFormat) -> Pair {
    let reference = Tree::build(format, Linker::Lld);
    let ours = Tree::new(format);
    // `objects` already runs LD once: mod/bar.o, a single-object module.
    ours.make(Linker::Kdthin, &["objects"]).ok();
    let before = ours.snapshot();
    ours.make(Linker::Kdthin, &["all"]).ok();
    ours.snapshot().assert_only_changes(&before, is_link_product);
    assert_no_litter(&ours);
    Pair { reference, ours }
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
    for (tree, linker) in [(&p.reference, Linker::Lld), (&p.ours, Linker::Kdthin)] {
        tree.edit("kernel/sched.c", |s| s.replace("return x * SCALE;", "return x * SCALE + 1000;"));
        tree.make(linker, &["all"]).ok();
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
    t.link("vmlinux.o", Linker::Kdthin, &[("KDTHIN_SAVE_TEMPS", "1".as_ref())]).ok();
    assert!(!t.work_dirs().is_empty(), "KDTHIN_SAVE_TEMPS=1 left no .tmp_kdthin* in the tree");
}

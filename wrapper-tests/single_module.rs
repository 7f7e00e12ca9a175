//! Single-object modules: kbuild runs `$(LD) -r` on them inside their
//! compile recipe, before it writes their .cmd file (the fixture's mod/bar.o
//! does the same). kdthin-ld takes the compile from that recipe, its parent
//! shell's script, and distributes the link like any other.

use crate::support::*;
use std::ffi::OsStr;
use std::process::Command;

const BAR: &str = "mod/bar.o";
/// What the recipe's `$(LD) -r` writes (kbuild's `$(tmp-target)`).
const BAR_TMP: &str = "mod/.tmp_bar.o";

/// `make mod/bar.o` with kdthin-ld, verbose: it must go through the
/// distributed path with flags from the recipe, the .cmd file being in the
/// state `cmd_state` describes ("no such file", "is older than").
fn make_bar_distributed(t: &Tree, cmd_state: &str) -> Ran {
    let ran = t.make_with(Linker::Kdthin, &[BAR], &[("KDTHIN_VERBOSE", OsStr::new("1"))]).ok();
    let lto = ran.lto_line(BAR_TMP);
    assert_eq!((lto.modules, lto.compiled), (1, 1), "{}", ran.report());
    assert!(!ran.stderr.contains("linking in-process"), "{}", ran.report());
    let cmd = Tree::cmd_file(BAR);
    ran.stderr_contains(&format!(
        "kdthin-ld: {BAR_TMP}: {BAR}: compile flags from the recipe running this link (sh, pid "
    ))
    .stderr_contains(&format!("{cmd}{}", if cmd_state == "no such file" { ": no such file" } else { " is older than" }))
    .stderr_contains(&format!("kdthin-ld: {BAR_TMP}: compile flags: 0 from .cmd files, 1 from the recipe"));
    assert!(is_elf(&t.path(BAR)), "{BAR} should be ELF");
    assert!(t.exists(&native_object(BAR)), "no {} next to {BAR}", native_object(BAR));
    assert!(t.exists(&cmd), "make wrote no {cmd} after the recipe");
    assert_no_litter(t);
    ran
}

#[track_caller]
fn assert_same_symbols(reference: &Tree, ours: &Tree) {
    assert_same_lines(
        &format!("defined globals of {BAR}"),
        &defined_globals(&reference.path(BAR)),
        &defined_globals(&ours.path(BAR)),
    );
}

#[test]
fn first_build_is_distributed() {
    require_toolchain!();
    for format in [CmdFormat::Savedcmd, CmdFormat::Cmd] {
        let reference = Tree::new(format);
        reference.make(Linker::Lld, &[BAR]).ok();
        let ours = Tree::new(format);
        assert!(!ours.exists(&Tree::cmd_file(BAR)));
        make_bar_distributed(&ours, "no such file");
        assert_same_symbols(&reference, &ours);
        let syms = defined_globals(&ours.path(BAR));
        assert!(syms.iter().any(|s| s == "bar_init T"), "{syms:?}");
    }
}

#[test]
fn rebuild_after_an_edit_is_distributed() {
    require_toolchain!();
    let reference = Tree::new(CmdFormat::Savedcmd);
    let ours = Tree::new(CmdFormat::Savedcmd);
    reference.make(Linker::Lld, &[BAR]).ok();
    make_bar_distributed(&ours, "no such file");
    for tree in [&reference, &ours] {
        tree.edit("mod/bar.c", |s| {
            s.replace("return 0;", "return bar_helper();")
                .replace("int bar_init(void)", "int bar_helper(void)\n{\n\treturn 7;\n}\n\nint bar_init(void)")
        });
    }
    reference.make(Linker::Lld, &[BAR]).ok();
    // The .cmd file of the first build is there, older than the new object
    // when the link runs.
    make_bar_distributed(&ours, "is older than");
    assert_same_symbols(&reference, &ours);
    let syms = defined_globals(&ours.path(BAR));
    assert!(syms.iter().any(|s| s == "bar_helper T"), "the rebuilt code is not in {BAR}: {syms:?}");
}

/// A shell that runs the link but did not compile the object: the recipe
/// cannot stand in for the missing .cmd file, and the link runs in-process
/// with one line that says why.
#[test]
fn link_outside_the_compile_recipe_falls_back() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    let cmd = Tree::cmd_file("mod/foo_util.o");
    t.remove(&cmd);
    let argv = t.link_argv("mod/foo.o", Linker::Kdthin);
    let script = format!("{}; true", argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "));
    let mut sh = Command::new("/bin/sh");
    clean_env(&mut sh).current_dir(t.root()).env("KDTHIN_TMPDIR", t.index_tmp()).arg("-c").arg(&script);
    let ran = run(&mut sh).ok();
    let lines: Vec<&str> = ran.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1
            && lines[0].starts_with("kdthin-ld: mod/foo.o: linking in-process: mod/foo_util.o: ")
            && lines[0].contains(&format!("{cmd}: no such file; the recipe running this link (sh, pid "))
            && lines[0].ends_with(") does not compile mod/foo_util.o"),
        "expected one line saying why\n{}",
        ran.report()
    );
    assert!(is_elf(&t.path("mod/foo.o")));
    assert_no_litter(&t);
}

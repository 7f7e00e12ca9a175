//! The fixture itself, built with the real ld.lld only: if these fail, the
//! other tests' verdicts mean nothing.

use crate::support::*;

#[test]
fn reference_build_is_kbuild_like() {
    require_toolchain!();
    let t = Tree::build(CmdFormat::Savedcmd, Linker::Lld);

    assert_eq!(t.run_program("prog"), PROG_OUTPUT);
    for obj in VMLINUX_BITCODE.iter().chain(FOO_BITCODE).chain(&["lib/unused.o"]) {
        assert!(is_bitcode(&t.path(obj)), "{obj} should be bitcode");
    }
    for obj in ["arch/x86/kernel/head_64.o", "mod/bar.o", "vmlinux.o", "mod/foo.o", "prog"] {
        assert!(is_elf(&t.path(obj)), "{obj} should be ELF");
    }
    for ar in ["vmlinux.a", "built-in.a", "lib/lib.a", "arch/x86/built-in.a"] {
        assert!(t.read(ar).starts_with(b"!<thin>\n"), "{ar} should be a thin archive");
    }
    // Like kbuild's vmlinux.a: the head object moved first, members in
    // subdirectories, nested built-in.a flattened.
    let members = run(std::process::Command::new(AR).current_dir(t.root()).args(["t", "vmlinux.a"])).ok().stdout;
    assert_eq!(
        members.lines().collect::<Vec<_>>(),
        [
            "arch/x86/kernel/head_64.o",
            "init/main.o",
            "arch/x86/kvm/x86.o",
            "virt/kvm/kvm_main.o",
            "kernel/printk.o",
            "kernel/sched.o",
            "mm/slab.o"
        ]
    );
    // The lazy member nobody uses stays out.
    let syms = defined_globals(&t.path("vmlinux.o"));
    assert!(syms.iter().any(|s| s.starts_with("mini_strlen ")), "{syms:?}");
    assert!(!syms.iter().any(|s| s.starts_with("unused_helper ")), "{syms:?}");
    // ThinLTO imported sched_ticks() into init/main.o, so the static it
    // reads was promoted to a global with a module-hash suffix.
    assert!(syms.iter().any(|s| s.starts_with("ticks.llvm.")), "{syms:?}");
}

#[test]
fn cmd_files_use_make_escaping() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    let slab = String::from_utf8(t.read("mm/.slab.o.cmd")).unwrap();
    assert!(slab.starts_with("savedcmd_mm/slab.o := clang-22 -Wp,-MMD,mm/.slab.o.d "), "{slab}");
    assert!(slab.contains(r#" -D'pr_fmt(fmt)="slab: " fmt' -D'SLAB_TAG="$$tag $(pound)1"' "#), "{slab}");
    assert!(slab.contains(" -c -o mm/slab.o mm/slab.c"), "{slab}");
    assert!(slab.contains("\nsource_mm/slab.o := mm/slab.c\n"), "{slab}");
    assert!(slab.contains("\ndeps_mm/slab.o := \\\n  include/mini.h \\\n"), "{slab}");
    let vmlinux_a = String::from_utf8(t.read(".vmlinux.a.cmd")).unwrap();
    assert!(vmlinux_a.contains("mPiT $$(llvm-ar-22 t vmlinux.a | sed -n 1p)"), "{vmlinux_a}");
    // A single-object module's .cmd also holds its $(LD) -r step.
    let bar = String::from_utf8(t.read("mod/.bar.o.cmd")).unwrap();
    assert!(bar.contains(" -c -o mod/bar.o mod/bar.c  ; ld.lld-22 "), "{bar}");
    assert!(t.read("mod/foo.mod") == b"mod/foo_main.o\nmod/foo_util.o\n");
    // An object named through `..`, as arm64's KVM objects are.
    let kvm = String::from_utf8(t.read("virt/kvm/.kvm_main.o.cmd")).unwrap();
    assert!(kvm.starts_with("savedcmd_arch/x86/kvm/../../../virt/kvm/kvm_main.o := "), "{kvm}");
}

#[test]
fn cmd_files_in_6_1_format() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Cmd);
    t.make(Linker::Lld, &["objects"]).ok();
    let main = String::from_utf8(t.read("init/.main.o.cmd")).unwrap();
    assert!(main.starts_with("cmd_init/main.o := clang-22 "), "{main}");
}

#[test]
fn link_commands_are_spelled_like_kbuild() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    let spell = |target| {
        t.link_argv(target, Linker::Lld).iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    };
    assert_eq!(
        spell("vmlinux.o"),
        "ld.lld-22 -m elf_x86_64 -mllvm -import-instr-limit=5 -z noexecstack -r -o vmlinux.o \
         -T initcalls.lds --whole-archive vmlinux.a --no-whole-archive --start-group lib/lib.a --end-group"
    );
    assert_eq!(
        spell("mod/foo.o"),
        "ld.lld-22 -m elf_x86_64 -mllvm -import-instr-limit=5 -z noexecstack -r -o mod/foo.o @mod/foo.mod"
    );
}

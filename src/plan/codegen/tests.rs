//! Tests of the LTO option table. `real_*` runs clang-22; without it it
//! says so and passes, or fails when KDTHIN_REQUIRE_TOOLS=1 (CI).

use super::*;
use crate::args::table::OPTIONS;
use crate::args::OptKind;

fn extra(argv: &[&str]) -> Result<Vec<String>, String> {
    let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let cl = CommandLine::parse(&argv).unwrap();
    backend_options(&cl).map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
}

#[track_caller]
fn translates(argv: &[&str], want: &[&str]) {
    assert_eq!(extra(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}")), want, "{argv:?}");
}

#[track_caller]
fn in_process(argv: &[&str], naming: &str) {
    let why = extra(argv).err().unwrap_or_else(|| panic!("{argv:?} should run in-process"));
    assert!(why.contains(naming), "{argv:?}: the reason should name {naming}: {why}");
}

/// Every LTO option of lld 22's table (which the lld_check tests hold
/// to the installed ld.lld) has a row: a new one can never be ignored.
#[test]
fn every_lto_option_of_lld_has_a_row() {
    let missing: Vec<&str> =
        OPTIONS.iter().filter(|o| is_lto_option(o.name, o.id) && row_for(o.name).is_none()).map(|o| o.name).collect();
    assert!(missing.is_empty(), "lld LTO options without a row in LTO_OPTIONS: {missing:?}");
    for r in LTO_OPTIONS {
        let o = OPTIONS.iter().find(|o| o.name == r.name);
        assert!(o.is_some_and(|o| is_lto_option(o.name, o.id)), "row {} is not an LTO option of lld's table", r.name);
    }
    let mut names: Vec<&str> = LTO_OPTIONS.iter().map(|r| r.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), LTO_OPTIONS.len(), "a row appears twice");
}

#[test]
fn every_lto_option_is_translated_or_refused() {
    // A row the code ignored (no arguments, no refusal) would pass
    // only if it is ThinLink or a default; check each row's outcome
    // is what its kind says.
    for r in LTO_OPTIONS {
        let kind = OPTIONS.iter().find(|o| o.name == r.name).unwrap().kind;
        let spelled = format!("--{}", r.name);
        let got = match kind {
            OptKind::Flag => extra(&[&spelled]),
            OptKind::Separate => extra(&[&spelled, "x"]),
            _ if r.name.ends_with('O') || r.name.ends_with("CGO") => extra(&[&format!("{spelled}2")]),
            _ => extra(&[&format!("{spelled}x")]),
        };
        match r.backends {
            ThinLink => assert_eq!(got, Ok(vec![]), "{spelled}"),
            InProcess => assert!(got.as_ref().is_err_and(|e| e.contains("no per-backend")), "{spelled}: {got:?}"),
            OwnThinLto => assert!(got.as_ref().is_err_and(|e| e.contains("already uses")), "{spelled}: {got:?}"),
            Clang(_) | Last { .. } | By(_) => {}
        }
    }
}

#[test]
fn codegen_options_in_clang_spelling() {
    translates(&["--lto-O3", "-plugin-opt=O1"], &["-O3", "-O1"]);
    let profile = ["-mllvm", "-sample-profile-use-profi=false", "-fprofile-sample-use=k.afdo"];
    translates(&["--lto-sample-profile=k.afdo"], &profile);
    translates(&["-plugin-opt=sample-profile=k.afdo"], &profile);
    translates(&["--lto-basic-block-sections=all"], &["-fbasic-block-sections=all"]);
    translates(&["--lto-basic-block-sections=none"], &["-fbasic-block-sections=none"]);
    translates(&["--lto-basic-block-sections=p_cc_profile.txt"], &["-fbasic-block-sections=list=p_cc_profile.txt"]);
    translates(&["--lto-basic-block-sections=labels"], &[]);
    translates(&["--lto-basic-block-address-map"], &["-fbasic-block-address-map"]);
    translates(&["--lto-unique-basic-block-section-names"], &["-funique-basic-block-section-names"]);
    translates(&["--no-lto-pgo-warn-mismatch"], &["-mllvm", "-no-pgo-warn-mismatch"]);
    translates(&["--disable-verify"], &["-Xclang", "-disable-llvm-verifier"]);
    translates(&["--plugin-opt=mcpu=znver3"], &["-Xclang", "-target-cpu", "-Xclang", "znver3"]);
    translates(&["-plugin-opt", "mcpu=znver3"], &["-Xclang", "-target-cpu", "-Xclang", "znver3"]);
    translates(&["--lto-whole-program-visibility", "--thinlto-jobs=4", "-plugin-opt=thinlto", "--lto=thin"], &[]);
}

#[test]
fn the_last_of_an_on_off_pair_wins() {
    let on = ["-fbasic-block-address-map"];
    translates(&["--no-lto-basic-block-address-map", "--lto-basic-block-address-map"], &on);
    translates(&["--lto-basic-block-address-map", "--no-lto-basic-block-address-map"], &[]);
    translates(&["--no-lto-pgo-warn-mismatch", "--lto-pgo-warn-mismatch"], &[]);
}

#[test]
fn kernel_autofdo_and_propeller_links() {
    // scripts/Makefile.autofdo (6.13+) on the ThinLTO link.
    translates(
        &[
            "--lto-sample-profile=/k/autofdo.prof",
            "--mllvm=-enable-fs-discriminator=true",
            "--mllvm=-improved-fs-discriminator=true",
            "-plugin-opt=thinlto",
            "-plugin-opt=-split-machine-functions",
        ],
        &[
            "-mllvm",
            "-sample-profile-use-profi=false",
            "-fprofile-sample-use=/k/autofdo.prof",
            "-mllvm",
            "-enable-fs-discriminator=true",
            "-mllvm",
            "-improved-fs-discriminator=true",
            "-fsplit-machine-functions",
        ],
    );
    // scripts/Makefile.propeller.
    translates(
        &["--lto-basic-block-sections=/k/p_cc_profile.txt"],
        &["-fbasic-block-sections=list=/k/p_cc_profile.txt"],
    );
}

/// clang's driver turns profile inference on for every
/// `-fprofile-sample-use=`; in-process lld leaves it off, and with it on
/// -split-machine-functions split blocks that ld.lld's output kept.
#[test]
fn a_sample_profile_is_loaded_as_lld_loads_it() {
    // Profi off once, ahead of the link's own -mllvm options (a later
    // `-mllvm -sample-profile-use-profi` still turns it on, as in lld).
    translates(
        &["-mllvm", "-sample-profile-use-profi", "--lto-sample-profile=a.prof", "--lto-sample-profile=b.prof"],
        &[
            "-mllvm",
            "-sample-profile-use-profi=false",
            "-mllvm",
            "-sample-profile-use-profi",
            "-fprofile-sample-use=a.prof",
            "-fprofile-sample-use=b.prof",
        ],
    );
    in_process(&["--lto-sample-profile="], "--lto-sample-profile=");
}

#[test]
fn llvm_codegen_flags_clang_does_not_register() {
    // riscv's arch/riscv/Makefile, on every LTO link.
    translates(
        &["-mllvm", "-mattr=+c", "-mllvm", "-mattr=+relax"],
        &["-Xclang", "-target-feature", "-Xclang", "+c", "-Xclang", "-target-feature", "-Xclang", "+relax"],
    );
    translates(
        &["-mllvm", "-mattr=+avx2,-sse4a"],
        &["-Xclang", "-target-feature", "-Xclang", "+avx2", "-Xclang", "-target-feature", "-Xclang", "-sse4a"],
    );
    // Kernels linked with lld < 13.
    translates(
        &["-plugin-opt=-code-model=kernel", "-plugin-opt=-stack-alignment=8"],
        &["-mcmodel=kernel", "-mstack-alignment=8"],
    );
    translates(&["-mllvm", "-mcpu=sifive-u74"], &["-Xclang", "-target-cpu", "-Xclang", "sifive-u74"]);
    translates(&["-mllvm", "-relocation-model=static"], &["-fno-pic"]);
    translates(&["-mllvm", "-split-machine-functions=false"], &["-fno-split-machine-functions"]);
    translates(&["-mllvm", "-basic-block-address-map"], &["-fbasic-block-address-map"]);
    // Any other LLVM option passes through.
    translates(&["-mllvm", "-import-instr-limit=5"], &["-mllvm", "-import-instr-limit=5"]);
    translates(
        &["-mllvm", "-always-rename-promoted-locals=false"],
        &["-mllvm", "-always-rename-promoted-locals=false"],
    );
}

#[test]
fn no_faithful_spelling_runs_in_process() {
    in_process(&["--lto-CGO2"], "--lto-CGO");
    in_process(&["--lto-emit-llvm"], "--lto-emit-llvm");
    in_process(&["--lto-cs-profile-file=cs.profdata"], "--lto-cs-profile-file");
    in_process(&["--lto-newpm-passes=default<O2>"], "--lto-newpm-passes");
    in_process(&["--save-temps"], "--save-temps");
    in_process(&["-mllvm", "-frame-pointer=all"], "-frame-pointer=all");
    in_process(&["-mllvm", "-mattr=c"], "-mattr=c");
    in_process(&["-mllvm", "-mcpu=native"], "-mcpu=native");
    in_process(&["-mllvm", "-relocation-model=ropi"], "-relocation-model=ropi");
    in_process(&["-mllvm", "-code-model"], "-code-model");
    in_process(&["--lto=full"], "--lto=full");
    in_process(&["--thinlto-index-only=l"], "thinlto-index-only");
    in_process(&["-plugin-opt=thinlto-index-only"], "thinlto-index-only");
    in_process(&["--thinlto-distributor=d"], "thinlto-distributor");
}

/// Every clang spelling the table can produce, given to a real
/// clang-22 ThinLTO backend compile (`-x ir` of ThinLTO bitcode): it
/// must accept it, without "unknown" or "unused" complaints. Catches a
/// misspelling, or an `-mllvm` option clang does not register.
#[test]
fn real_clang_accepts_every_translation() {
    use std::process::Command;
    let clang = "clang-22";
    if !Command::new(clang).arg("--version").output().is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("KDTHIN_REQUIRE_TOOLS").is_none_or(|v| v != "1"),
            "{clang} is not installed (and KDTHIN_REQUIRE_TOOLS=1)"
        );
        eprintln!("skipped: {clang} is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    std::fs::write(p("t.c"), "int g(int *a, int n) { int s = 0; for (int i = 0; i < n; i++) s += a[i]; return s; }\n")
        .unwrap();
    std::fs::write(p("prof.txt"), "g:100:10\n 1: 10\n").unwrap();
    std::fs::write(p("bb.txt"), "!g\n").unwrap();
    let ok = |c: &mut Command| {
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), err)
    };
    let (built, err) = ok(Command::new(clang).args(["-O2", "-flto=thin", "-c", "-o", &p("t.o"), &p("t.c")]));
    assert!(built, "{err}");
    // A text sample profile is a valid profile for clang.
    let sample = format!("--lto-sample-profile={}", p("prof.txt"));
    let list = format!("--lto-basic-block-sections={}", p("bb.txt"));
    let links: &[&[&str]] = &[
        &["--lto-O2", &sample, "--no-lto-pgo-warn-mismatch", "--disable-verify"],
        &["--lto-basic-block-address-map", "--lto-unique-basic-block-section-names", &list],
        &["--lto-basic-block-sections=all", "-plugin-opt=mcpu=znver3", "-plugin-opt=-split-machine-functions"],
        &["-mllvm", "-mattr=+avx2,-sse4a", "-mllvm", "-mcpu=skylake", "-mllvm", "-stack-alignment=16"],
        &["-plugin-opt=-code-model=kernel", "-mllvm", "-relocation-model=static", "-mllvm", "-emulated-tls"],
        &["-mllvm", "-basic-block-address-map", "-mllvm", "-stack-size-section=false"],
        &["--mllvm=-enable-fs-discriminator=true", "-mllvm", "-relocation-model=pic"],
    ];
    for link in links {
        let args = extra(link).unwrap_or_else(|e| panic!("{link:?}: {e}"));
        let (passed, err) = ok(Command::new(clang).args(["-c", "-x", "ir", "-o", &p("n.o"), &p("t.o")]).args(&args));
        let complaint = ["nknown", "unused", "unsupported", "error"].iter().any(|w| err.contains(w));
        assert!(passed && !complaint, "{link:?} -> clang {args:?}:\n{err}");
    }
}

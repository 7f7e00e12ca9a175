//! Link options that steer ThinLTO code generation. In-process, ld.lld
//! applies them to every backend; distributed, each backend is a clang
//! command, so they are translated to clang spellings here. An option with
//! no faithful translation makes the link run in-process, with one line
//! saying which option: never silently dropped.
//!
//! [`LTO_OPTIONS`] is the one place that says, for each of ld.lld's LTO
//! options, what in-process lld does with it and what kdthin-ld does. A
//! test checks that every LTO option in lld's own table
//! ([`crate::args::table::OPTIONS`]) has a row. References: lld/ELF's
//! Options.td and LTO.cpp (`createConfig`), and LLVM's own out-of-process
//! backend (llvm/lib/LTO/LTO.cpp, DTLTO's `buildCommonRemoteCompilerOptions`).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

use crate::args::{lookup, ArgKind, CommandLine, Lookup, OptId};

/// What the backends get for one option.
#[derive(Clone, Copy)]
pub enum Backends {
    /// These clang arguments, `{}` standing for the option's value.
    Clang(&'static [&'static str]),
    /// One side of an on/off pair (`--x`, `--no-x`): the last one given
    /// wins, and its clang arguments (none for lld's default) are passed.
    Last { pair: &'static str, clang: &'static [&'static str] },
    /// Translated by a function of the value (it may refuse the value).
    By(fn(&str, &mut Vec<OsString>) -> Result<(), String>),
    /// Only the thin-link uses it (its results travel in the index
    /// shards), or only lld's own scheduling: the thin-link runs with the
    /// link's own options, the backends need nothing.
    ThinLink,
    /// No faithful per-backend equivalent: the link runs in-process.
    InProcess,
    /// The link drives ThinLTO itself: no second layer on top.
    OwnThinLto,
}

/// One of ld.lld's LTO options.
pub struct LtoOption {
    /// Its name in lld's table (`args::table::OPTIONS`), e.g.
    /// `lto-sample-profile=`, `plugin-opt=mcpu=`.
    pub name: &'static str,
    /// What in-process ld.lld does with it.
    pub in_lld: &'static str,
    pub backends: Backends,
}

const fn row(name: &'static str, in_lld: &'static str, backends: Backends) -> LtoOption {
    LtoOption { name, in_lld, backends }
}

use Backends::{By, Clang, InProcess, Last, OwnThinLto, ThinLink};

/// ld.lld 22's LTO options (and `-mllvm`), by name in lld's table.
#[rustfmt::skip]
pub static LTO_OPTIONS: &[LtoOption] = &[
    row("lto-O", "optimization level of the LTO pipeline", Clang(&["-O{}"])),
    row("plugin-opt=O", "same as --lto-O", Clang(&["-O{}"])),
    row("lto-CGO", "codegen optimization level, apart from --lto-O", InProcess),
    row("lto-sample-profile=", "AutoFDO sample profile for every backend", Clang(&["-fprofile-sample-use={}"])),
    row("plugin-opt=sample-profile=", "same as --lto-sample-profile=", Clang(&["-fprofile-sample-use={}"])),
    row("lto-basic-block-sections=", "all, none, labels or a function list file (Propeller)", By(bb_sections)),
    row("lto-basic-block-address-map", "emits .llvm_bb_addr_map", Last { pair: "bb-addr-map", clang: &["-fbasic-block-address-map"] }),
    row("no-lto-basic-block-address-map", "lld's default", Last { pair: "bb-addr-map", clang: &[] }),
    row("lto-unique-basic-block-section-names", "unique basic block section names",
        Last { pair: "unique-bb-names", clang: &["-funique-basic-block-section-names"] }),
    row("no-lto-unique-basic-block-section-names", "lld's default", Last { pair: "unique-bb-names", clang: &[] }),
    row("lto-pgo-warn-mismatch", "lld's default: warn about profile mismatches", Last { pair: "pgo-warn", clang: &[] }),
    row("no-lto-pgo-warn-mismatch", "no profile mismatch warnings",
        Last { pair: "pgo-warn", clang: &["-mllvm", "-no-pgo-warn-mismatch"] }),
    row("lto-cs-profile-file=", "context-sensitive PGO profile", InProcess),
    row("plugin-opt=cs-profile-path=", "same as --lto-cs-profile-file=", InProcess),
    row("lto-cs-profile-generate", "context-sensitive PGO instrumentation", InProcess),
    row("plugin-opt=cs-profile-generate", "same as --lto-cs-profile-generate", InProcess),
    row("lto-aa-pipeline=", "alias analysis pipeline of the LTO passes", InProcess),
    row("lto-newpm-passes=", "a custom LTO pass pipeline", InProcess),
    row("lto-debug-pass-manager", "prints the LTO pass manager's debug output", InProcess),
    row("plugin-opt=debug-pass-manager", "same as --lto-debug-pass-manager", InProcess),
    row("load-pass-plugin=", "loads a pass plugin into the LTO pipeline", InProcess),
    row("load-pass-plugin", "same as --load-pass-plugin=", InProcess),
    row("disable-verify", "no IR verifier in the LTO pipeline", Clang(&["-Xclang", "-disable-llvm-verifier"])),
    row("plugin-opt=disable-verify", "same as --disable-verify", Clang(&["-Xclang", "-disable-llvm-verifier"])),
    row("lto-emit-asm", "writes assembly instead of linking", InProcess),
    row("plugin-opt=emit-asm", "same as --lto-emit-asm", InProcess),
    row("lto-emit-llvm", "writes the optimized bitcode instead of linking", InProcess),
    row("plugin-opt=emit-llvm", "same as --lto-emit-llvm", InProcess),
    row("lto-obj-path=", "also writes the native objects to this path", InProcess),
    row("plugin-opt=obj-path=", "same as --lto-obj-path=", InProcess),
    row("plugin-opt=dwo_dir=", "split DWARF of the LTO objects into this directory", InProcess),
    row("save-temps", "writes every LTO stage's files", InProcess),
    row("save-temps=", "same as --save-temps, some stages", InProcess),
    row("plugin-opt=save-temps", "same as --save-temps", InProcess),
    row("plugin-opt=stats-file=", "writes LLVM statistics of the LTO to a file", InProcess),
    row("plugin-opt=time-trace=", "time trace of the LTO", InProcess),
    row("opt-remarks-filename", "one optimization remarks file for the LTO", InProcess),
    row("opt-remarks-format", "its format", InProcess),
    row("opt-remarks-hotness-threshold=", "its threshold", InProcess),
    row("opt-remarks-hotness-threshold", "its threshold", InProcess),
    row("opt-remarks-passes", "its passes", InProcess),
    row("opt-remarks-with-hotness", "its hotness", InProcess),
    row("plugin-opt=opt-remarks-filename=", "same as --opt-remarks-filename", InProcess),
    row("plugin-opt=opt-remarks-format=", "same as --opt-remarks-format", InProcess),
    row("plugin-opt=opt-remarks-hotness-threshold=", "same as --opt-remarks-hotness-threshold", InProcess),
    row("plugin-opt=opt-remarks-passes=", "same as --opt-remarks-passes", InProcess),
    row("plugin-opt=opt-remarks-with-hotness", "same as --opt-remarks-with-hotness", InProcess),
    row("fat-lto-objects", "links the bitcode inside fat objects", InProcess),
    row("no-fat-lto-objects", "lld's default", ThinLink),
    row("lto=", "unified LTO: full, thin or default", By(lto_mode)),
    row("lto-partitions=", "regular (full) LTO partitions; kdthin-ld refuses full LTO anyway", ThinLink),
    row("plugin-opt=lto-partitions=", "same as --lto-partitions=", ThinLink),
    // Whole-program devirtualization happens in the thin-link; its
    // resolutions travel in the index shards. (With `-mllvm
    // -always-rename-promoted-locals=false`, kernels from ~7.1 on LLVM 23,
    // the shards must carry the no-rename flag too: LLVM PR #188074. That
    // option reaches the backends as `-mllvm`, like every LLVM option
    // clang registers; an LLVM without it rejects it in the thin-link.)
    row("lto-whole-program-visibility", "whole-program devirtualization in the thin-link", ThinLink),
    row("no-lto-whole-program-visibility", "lld's default", ThinLink),
    row("lto-validate-all-vtables-have-type-infos", "a thin-link devirtualization check", ThinLink),
    row("no-lto-validate-all-vtables-have-type-infos", "lld's default", ThinLink),
    row("lto-known-safe-vtables=", "for that check", ThinLink),
    row("lto-known-safe-vtables", "for that check", ThinLink),
    row("plugin-opt=thinlto", "marks a ThinLTO link (gold plugin); nothing in lld", ThinLink),
    row("plugin-opt=jobs=", "how many backends run at once", ThinLink),
    row("thinlto-jobs=", "how many backends run at once", ThinLink),
    row("thinlto-cache-dir=", "lld's own backend cache; kdthin-ld has its own", ThinLink),
    row("thinlto-cache-policy=", "its pruning", ThinLink),
    row("thinlto-cache-policy", "its pruning", ThinLink),
    row("plugin-opt=-fresolution=", "gcc's LTO plugin option; lld ignores it", ThinLink),
    row("plugin-opt=-pass-through=", "gcc's LTO plugin option; lld ignores it", ThinLink),
    row("plugin-opt=", "gcc's lto-wrapper, ignored; anything else is an error in lld", ThinLink),
    row("thinlto-distributor-arg=", "only with --thinlto-distributor=", ThinLink),
    row("thinlto-distributor-arg", "only with --thinlto-distributor=", ThinLink),
    row("thinlto-remote-compiler=", "only with --thinlto-distributor=", ThinLink),
    row("thinlto-remote-compiler-arg=", "only with --thinlto-distributor=", ThinLink),
    row("thinlto-remote-compiler-arg", "only with --thinlto-distributor=", ThinLink),
    row("thinlto-remote-compiler-prepend-arg=", "only with --thinlto-distributor=", ThinLink),
    row("thinlto-remote-compiler-prepend-arg", "only with --thinlto-distributor=", ThinLink),
    row("thinlto-single-module=", "compiles only the named modules", InProcess),
    row("thinlto-distributor=", "lld's own distributed ThinLTO", OwnThinLto),
    row("thinlto-index-only", "writes index files only", OwnThinLto),
    row("thinlto-index-only=", "writes index files only", OwnThinLto),
    row("plugin-opt=thinlto-index-only", "writes index files only", OwnThinLto),
    row("plugin-opt=thinlto-index-only=", "writes index files only", OwnThinLto),
    row("thinlto-emit-imports-files", "writes imports files", OwnThinLto),
    row("plugin-opt=thinlto-emit-imports-files", "writes imports files", OwnThinLto),
    row("thinlto-emit-index-files", "writes index files", OwnThinLto),
    row("thinlto-prefix-replace=", "renames index files", OwnThinLto),
    row("plugin-opt=thinlto-prefix-replace=", "renames index files", OwnThinLto),
    row("thinlto-object-suffix-replace=", "renames index files", OwnThinLto),
    row("plugin-opt=thinlto-object-suffix-replace=", "renames index files", OwnThinLto),
    row("mllvm", "an LLVM option for every backend", By(mllvm)),
    row("mllvm=", "same as -mllvm", By(mllvm)),
    row("plugin-opt=-", "same as -mllvm -X", By(plugin_mllvm)),
    row("plugin-opt=mcpu=", "the target CPU of every backend", By(target_cpu)),
];

/// `--lto-basic-block-sections=`: lld's values, as clang spells them.
fn bb_sections(v: &str, out: &mut Vec<OsString>) -> Result<(), String> {
    match v {
        "all" | "none" => out.push(format!("-fbasic-block-sections={v}").into()),
        // lld 22 only warns for `labels` and then sets BBAddrMap from
        // --lto-basic-block-address-map alone, so it does nothing.
        "labels" => {}
        "" => return Err("--lto-basic-block-sections= without a value".into()),
        file => out.push(format!("-fbasic-block-sections=list={file}").into()),
    }
    Ok(())
}

/// `--lto=`: `full` sends unified-LTO bitcode through regular LTO, which
/// the distributed path does not do.
fn lto_mode(v: &str, _: &mut Vec<OsString>) -> Result<(), String> {
    match v {
        "thin" | "default" => Ok(()),
        _ => Err(format!("--lto={v} has no per-backend equivalent")),
    }
}

fn target_cpu(cpu: &str, out: &mut Vec<OsString>) -> Result<(), String> {
    // Not clang's -mcpu=: on x86 clang ignores it without a word. The
    // backend's target CPU is cc1's -target-cpu, which -Xclang puts after
    // the driver's own. `native` is resolved by lld on the linking host.
    if cpu == "native" || cpu.is_empty() {
        return Err(format!("-mcpu={cpu} has no per-backend equivalent"));
    }
    out.extend(["-Xclang", "-target-cpu", "-Xclang", cpu].map(OsString::from));
    Ok(())
}

fn plugin_mllvm(v: &str, out: &mut Vec<OsString>) -> Result<(), String> {
    mllvm(&format!("-{v}"), out)
}

/// LLVM's codegen flags (llvm/lib/CodeGen/CommandFlags.cpp) with a clang
/// spelling. ld.lld registers them, like llc; clang does not, and
/// `clang -mllvm -mattr=+c` fails with "Unknown command line argument".
/// A boolean flag may be written `-x`, `-x=true` or `-x=false`.
#[rustfmt::skip]
const CODEGEN_FLAGS: &[(&str, CodegenFlag)] = &[
    ("mattr", CodegenFlag::By(target_features)),
    ("mcpu", CodegenFlag::By(target_cpu)),
    ("code-model", CodegenFlag::Value("-mcmodel=")),
    ("stack-alignment", CodegenFlag::Value("-mstack-alignment=")),
    ("relocation-model", CodegenFlag::By(relocation_model)),
    ("basic-block-sections", CodegenFlag::By(bb_sections)),
    ("basic-block-address-map", CodegenFlag::Bool("-fbasic-block-address-map", "-fno-basic-block-address-map")),
    ("unique-basic-block-section-names",
        CodegenFlag::Bool("-funique-basic-block-section-names", "-fno-unique-basic-block-section-names")),
    ("split-machine-functions", CodegenFlag::Bool("-fsplit-machine-functions", "-fno-split-machine-functions")),
    ("emulated-tls", CodegenFlag::Bool("-femulated-tls", "-fno-emulated-tls")),
    ("stack-size-section", CodegenFlag::Bool("-fstack-size-section", "-fno-stack-size-section")),
];

/// The rest of CommandFlags.cpp's flags: clang has no `-mllvm` for them,
/// and no spelling checked here. (`function-sections` and friends are
/// read by llc, not by lld's LTO, but lld accepts them all.)
const CODEGEN_FLAGS_UNTRANSLATED: &[&str] = &[
    "march",
    "thread-model",
    "large-data-threshold",
    "exception-model",
    "filetype",
    "frame-pointer",
    "enable-no-infs-fp-math",
    "enable-no-nans-fp-math",
    "enable-no-signed-zeros-fp-math",
    "enable-no-trapping-fp-math",
    "denormal-fp-math",
    "denormal-fp-math-f32",
    "enable-sign-dependent-rounding-fp-math",
    "float-abi",
    "fp-contract",
    "swift-async-fp",
    "nozero-initialized-in-bss",
    "vec-extabi",
    "tailcallopt",
    "disable-tail-calls",
    "stack-symbol-ordering",
    "stackrealign",
    "trap-func",
    "use-ctors",
    "data-sections",
    "function-sections",
    "ignore-xcoff-visibility",
    "xcoff-traceback-table",
    "tls-size",
    "enable-tlsdesc",
    "unique-section-names",
    "separate-named-sections",
    "meabi",
    "debugger-tune",
    "addrsig",
    "call-graph-section",
    "emit-call-site-info",
    "debug-entry-values",
    "partition-static-data-sections",
    "force-dwarf-frame-section",
    "xray-function-index",
    "strict-dwarf",
    "align-loops",
    "enable-jmc-instrument",
    "mxcoff-roptr",
    "no-integrated-as",
];

#[derive(Clone, Copy)]
enum CodegenFlag {
    /// `-x=V` -> `PREFIX` V.
    Value(&'static str),
    /// `-x[=true]` -> the first, `-x=false` -> the second.
    Bool(&'static str, &'static str),
    By(fn(&str, &mut Vec<OsString>) -> Result<(), String>),
}

/// One `-mllvm` option (`-name[=value]`, as lld gets it): a codegen flag
/// clang does not register, translated, or passed through as `-mllvm`.
fn mllvm(opt: &str, out: &mut Vec<OsString>) -> Result<(), String> {
    let bare = opt.trim_start_matches('-');
    let (name, value) = match bare.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (bare, None),
    };
    if let Some((_, flag)) = CODEGEN_FLAGS.iter().find(|(n, _)| *n == name) {
        let refuse = || format!("-mllvm {opt} has no per-backend equivalent");
        match (*flag, value) {
            (CodegenFlag::Value(prefix), Some(v)) if !v.is_empty() => out.push(format!("{prefix}{v}").into()),
            (CodegenFlag::Bool(on, _), None | Some("true" | "1")) => out.push(on.into()),
            (CodegenFlag::Bool(_, off), Some("false" | "0")) => out.push(off.into()),
            (CodegenFlag::By(f), Some(v)) => f(v, out).map_err(|_| refuse())?,
            _ => return Err(refuse()),
        }
        return Ok(());
    }
    if CODEGEN_FLAGS_UNTRANSLATED.contains(&name) {
        return Err(format!("-mllvm {opt} is an LLVM codegen flag that clang does not accept"));
    }
    out.extend(["-mllvm".into(), opt.into()]);
    Ok(())
}

/// `-mattr=+c,-relax`: one `-target-feature` each, as clang spells them.
fn target_features(list: &str, out: &mut Vec<OsString>) -> Result<(), String> {
    for f in list.split(',').filter(|f| !f.is_empty()) {
        // An unsigned feature means something else to each LLVM tool.
        if !f.starts_with(['+', '-']) {
            return Err(format!("target feature `{f}` without + or -"));
        }
        out.extend(["-Xclang", "-target-feature", "-Xclang", f].map(OsString::from));
    }
    Ok(())
}

fn relocation_model(v: &str, out: &mut Vec<OsString>) -> Result<(), String> {
    match v {
        "static" => out.push("-fno-pic".into()),
        "pic" => out.push("-fPIC".into()),
        _ => return Err(format!("relocation model {v}")),
    }
    Ok(())
}

/// The row for an option named `name` in lld's table.
pub fn row_for(name: &str) -> Option<&'static LtoOption> {
    LTO_OPTIONS.iter().find(|r| r.name == name)
}

/// Should this option have a row? Every LTO option of lld's table does.
pub fn is_lto_option(name: &str, id: OptId) -> bool {
    matches!(
        id,
        OptId::Mllvm
            | OptId::LtoOptLevel
            | OptId::LtoOther
            | OptId::PluginOpt
            | OptId::ThinltoIndexOnly
            | OptId::ThinltoDistributor
    ) || name.starts_with("thinlto-")
}

/// The clang arguments every backend gets for the link's LTO options, or
/// why the link must run in-process.
pub fn backend_options(cl: &CommandLine) -> Result<Vec<OsString>, String> {
    let mut out: Vec<OsString> = Vec::new();
    let mut last: BTreeMap<&str, &[&str]> = BTreeMap::new();
    for a in &cl.args {
        let ArgKind::Opt { id, value } = &a.kind else { continue };
        let value = value.as_deref().map(|v| v.to_string_lossy().into_owned()).unwrap_or_default();
        // The name in lld's table: `-plugin-opt X` is `-plugin-opt=X`.
        let spelled: OsString =
            if *id == OptId::PluginOpt { format!("--plugin-opt={value}").into() } else { a.tokens[0].clone() };
        if *id == OptId::Other && !spelled.to_string_lossy().contains("thinlto-") {
            continue;
        }
        let Lookup::Opt { info, .. } = lookup(&spelled, a.tokens.get(1).map(OsString::as_os_str)) else { continue };
        let shown = format!("--{}", info.name.trim_end_matches('='));
        let Some(row) = row_for(info.name) else {
            if is_lto_option(info.name, *id) {
                return Err(format!("{shown} is not in kdthin-ld's table of LTO options"));
            }
            continue;
        };
        // A plugin option's value is all of X; the row wants what follows
        // its own name (`mcpu=` in `plugin-opt=mcpu=`).
        let value = match info.name.strip_prefix("plugin-opt=") {
            Some(sub) => value.strip_prefix(sub).unwrap_or(&value).to_string(),
            None => value,
        };
        match row.backends {
            Clang(args) => out.extend(args.iter().map(|s| OsString::from(s.replace("{}", &value)))),
            Last { pair, clang } => {
                last.insert(pair, clang);
            }
            By(f) => f(&value, &mut out)?,
            ThinLink => {}
            InProcess => return Err(format!("{shown} has no per-backend equivalent")),
            OwnThinLto => return Err(format!("the link already uses {shown}")),
        }
    }
    for clang in last.values() {
        out.extend(clang.iter().map(OsStr::new).map(OsString::from));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
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
        let missing: Vec<&str> = OPTIONS
            .iter()
            .filter(|o| is_lto_option(o.name, o.id) && row_for(o.name).is_none())
            .map(|o| o.name)
            .collect();
        assert!(missing.is_empty(), "lld LTO options without a row in LTO_OPTIONS: {missing:?}");
        for r in LTO_OPTIONS {
            let o = OPTIONS.iter().find(|o| o.name == r.name);
            assert!(
                o.is_some_and(|o| is_lto_option(o.name, o.id)),
                "row {} is not an LTO option of lld's table",
                r.name
            );
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
        translates(&["--lto-sample-profile=k.afdo"], &["-fprofile-sample-use=k.afdo"]);
        translates(&["-plugin-opt=sample-profile=k.afdo"], &["-fprofile-sample-use=k.afdo"]);
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
        std::fs::write(
            p("t.c"),
            "int g(int *a, int n) { int s = 0; for (int i = 0; i < n; i++) s += a[i]; return s; }\n",
        )
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
            let (passed, err) =
                ok(Command::new(clang).args(["-c", "-x", "ir", "-o", &p("n.o"), &p("t.o")]).args(&args));
            let complaint = ["nknown", "unused", "unsupported", "error"].iter().any(|w| err.contains(w));
            assert!(passed && !complaint, "{link:?} -> clang {args:?}:\n{err}");
        }
    }
}

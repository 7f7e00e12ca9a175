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
    row("lto-sample-profile=", "AutoFDO sample profile for every backend", By(sample_profile)),
    row("plugin-opt=sample-profile=", "same as --lto-sample-profile=", By(sample_profile)),
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

/// What turns off the profile inference (profi) that clang's driver adds
/// to every `-fprofile-sample-use=` compile (clang 22's does, 19's does
/// not); `-fno-sample-profile-use-profi` says the same, but clang 19 and
/// older reject it.
const NO_PROFI: [&str; 2] = ["-mllvm", "-sample-profile-use-profi=false"];

/// `--lto-sample-profile=F`: in-process lld loads F with profi off
/// (LLVM's default), clang's driver turns it on, and with profi a
/// zero-count block really is zero, so -split-machine-functions moves it
/// out (measured: `.text.split.` sections that ld.lld's output lacks).
/// Profi goes off ahead of the link's other options, so that the link's
/// own `-mllvm -sample-profile-use-profi`, if any, still wins.
fn sample_profile(file: &str, out: &mut Vec<OsString>) -> Result<(), String> {
    if file.is_empty() {
        return Err("--lto-sample-profile= without a file".into());
    }
    if !out.windows(2).any(|w| w == NO_PROFI) {
        out.splice(0..0, NO_PROFI.map(OsString::from));
    }
    out.push(format!("-fprofile-sample-use={file}").into());
    Ok(())
}

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
#[path = "codegen/tests.rs"]
mod tests;

//! The option table: which ld.lld options exist, how their values are
//! spelled, and which ones kdthin-ld needs to understand.
//!
//! `OPTIONS` is lld 22's own option table (lld/ELF/Options.td as compiled
//! into Debian's ld.lld 22.1.8), in lld's order: every name, its kind and
//! the dashes it accepts. It was read out of that binary's OptTable because
//! lld 22's Options.td was not at hand. The `lld_check` tests compare it
//! with the installed ld.lld: its option names, its `--help`, how it splits
//! argv and which option it takes each spelling for. When lld changes, they
//! list what differs.
//!
//! `lookup` matches a token the way llvm::opt::OptTable does, including its
//! surprises: `-output` is `-o utput` (`--output` takes two dashes only), and
//! `-lto-O2` is `-l to-O2`.

use std::cmp::Reverse;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use OptId::*;
use OptKind::{Flag, Joined, JoinedOrSeparate, Separate};

/// How an option's value is spelled (lld's Options.td kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptKind {
    /// No value: `--whole-archive`.
    Flag,
    /// Value attached: `--script=x`, `--lto-O2` (the name includes any `=`).
    Joined,
    /// Value is the next token: `-mllvm x`.
    Separate,
    /// Either: `-o x` or `-ox`.
    JoinedOrSeparate,
}

/// Options kdthin-ld acts on. Everything else in the table is `Other`: its
/// arity matters (so its value is not mistaken for an input), nothing more.
/// Aliases get the id of what they alias (`-static` is `Bstatic`), except
/// that every `--plugin-opt=` form is `PluginOpt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OptId {
    /// `-o`, `--output`.
    Output,
    /// `-r`, `--relocatable`. Anywhere on the line it also makes the whole
    /// link static: lld then ignores `-Bdynamic`.
    Relocatable,
    WholeArchive,
    NoWholeArchive,
    /// `--start-group`, `-(`.
    StartGroup,
    /// `--end-group`, `-)`.
    EndGroup,
    StartLib,
    EndLib,
    PushState,
    PopState,
    /// `-Bstatic`, `-static`, `-dn`, `-non_shared`.
    Bstatic,
    /// `-Bdynamic`, `-dy`, `-call_shared`.
    Bdynamic,
    AsNeeded,
    NoAsNeeded,
    /// `-l`, `--library`.
    Library,
    /// `-L`, `--library-path`.
    LibraryPath,
    /// `-T`, `--script`.
    Script,
    Sysroot,
    Mllvm,
    /// `--lto-O<n>`.
    LtoOptLevel,
    /// Any other option that changes what LTO does: `--lto-*` (including
    /// `--lto-CGO<n>`), `--no-lto-*`, `--[no-]fat-lto-objects`,
    /// `--save-temps`, `--disable-verify`, `--opt-remarks-*`,
    /// `--load-pass-plugin`. `--thinlto-*` options other than the two below
    /// are `Other`.
    LtoOther,
    /// `-plugin-opt=X`, `--plugin-opt=X` and `-plugin-opt X`, whatever X
    /// is (`O2`, `-some-llvm-option`, `mcpu=znver3`, `thinlto-index-only`...).
    /// The value is all of X, as gold's plugin would get it, not just what
    /// follows the lld alias it matches.
    PluginOpt,
    /// `--thinlto-index-only[=list]` (the `--plugin-opt=` forms are
    /// `PluginOpt`).
    ThinltoIndexOnly,
    ThinltoDistributor,
    /// `--version`, `-v`, `-V`. Note `-v` prints the version and still links
    /// when there are inputs; `--version` prints it and stops.
    Version,
    Help,
    /// `-m`.
    Emulation,
    /// `--default-script`, `-dT`: a linker script used if no `-T` is given.
    DefaultScript,
    /// `--omagic`, `-N`: also makes later `-l` static, like `-Bstatic`.
    Omagic,
    /// `--nmagic`, `-n`: also makes later `-l` static, like `-Bstatic`.
    Nmagic,
    /// `--format`, `-b`: `binary` makes the following inputs raw data.
    Format,
    /// `--rsp-quoting`: how lld tokenizes response files.
    RspQuoting,
    /// `--chroot`: prefixed to absolute input paths.
    Chroot,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptInfo {
    /// Name without leading dashes; for `Joined` `--foo=` style include `=`.
    pub name: &'static str,
    pub kind: OptKind,
    pub id: OptId,
    /// Accepts a single dash (`-name`). Most multi-letter lld options accept
    /// both `-` and `--`; newer or lld-only ones, and those starting with
    /// `o`, only `--`; single-letter ones only `-`.
    pub single_dash: bool,
    pub double_dash: bool,
}

impl OptInfo {
    /// How many bytes of `token` are this option's dashes and name, if the
    /// token starts with them.
    fn spelled_len(&self, token: &[u8]) -> Option<usize> {
        let dashes = [(self.double_dash, 2), (self.single_dash, 1)];
        dashes.iter().find_map(|&(accepted, n)| {
            let rest = token.strip_prefix(&b"--"[..n])?;
            (accepted && rest.starts_with(self.name.as_bytes())).then_some(n + self.name.len())
        })
    }
}

/// What a token is, as lld's option parser sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Not an option: an input file, or `-` (stdin).
    Input,
    /// Starts with `-` but no option accepts it (lld: "unknown argument").
    Unknown,
    /// A known option. `value` is the part of the token after the name
    /// (joined), or the next token (separate, then `consumes_next`).
    Opt { info: &'static OptInfo, value: Option<&'a OsStr>, consumes_next: bool },
    /// The option wants the next token as its value and there is none.
    MissingValue(&'static OptInfo),
}

/// Classify `token` (followed by `next`, if any) like llvm::opt::OptTable:
/// of all options whose dashes and name begin the token, the longest name
/// is tried first and the first one that accepts the token wins. A flag or a
/// separate option accepts only an exact match; a joined one anything.
/// The value of a `PluginOpt` is everything after `plugin-opt=`.
pub fn lookup<'a>(token: &'a OsStr, next: Option<&'a OsStr>) -> Lookup<'a> {
    match lookup_spelled(token, next) {
        Lookup::Opt { info, consumes_next: false, .. } if info.id == PluginOpt => {
            // The whole plugin option: `O2` in `-plugin-opt=O2`, not `2`.
            let x = token.as_bytes().splitn(2, |&b| b == b'=').nth(1);
            Lookup::Opt { info, value: x.map(OsStr::from_bytes), consumes_next: false }
        }
        found => found,
    }
}

fn lookup_spelled<'a>(token: &'a OsStr, next: Option<&'a OsStr>) -> Lookup<'a> {
    let tok = token.as_bytes();
    if tok == b"-" || !tok.starts_with(b"-") {
        return Lookup::Input;
    }
    let mut candidates: Vec<(&'static OptInfo, usize)> =
        OPTIONS.iter().filter_map(|o| Some((o, o.spelled_len(tok)?))).collect();
    candidates.sort_by_key(|(o, _)| Reverse(o.name.len()));
    for (info, len) in candidates {
        let exact = len == tok.len();
        let joined = || Lookup::Opt { info, value: Some(OsStr::from_bytes(&tok[len..])), consumes_next: false };
        match (info.kind, exact) {
            (Flag, true) => return Lookup::Opt { info, value: None, consumes_next: false },
            (Flag | Separate, false) => continue,
            (Joined, _) | (JoinedOrSeparate, false) => return joined(),
            (Separate | JoinedOrSeparate, true) => {
                return match next {
                    Some(v) => Lookup::Opt { info, value: Some(v), consumes_next: true },
                    None => Lookup::MissingValue(info),
                }
            }
        }
    }
    Lookup::Unknown
}

// Dashes accepted, in short for the table below: `-x` only, `--x` only, or both.
const ONE: (bool, bool) = (true, false);
const TWO: (bool, bool) = (false, true);
const BOTH: (bool, bool) = (true, true);

const fn e(name: &'static str, kind: OptKind, (single_dash, double_dash): (bool, bool), id: OptId) -> OptInfo {
    OptInfo { name, kind, id, single_dash, double_dash }
}

/// lld 22's options, in lld's order (see the module comment).
#[rustfmt::skip]
pub static OPTIONS: &[OptInfo] = &[
    e("(",                                            Flag,              ONE,   StartGroup),
    e(")",                                            Flag,              ONE,   EndGroup),
    e("allow-multiple-definition",                    Flag,              BOTH,  Other),
    e("allow-shlib-undefined",                        Flag,              BOTH,  Other),
    e("android-memtag-heap",                          Flag,              TWO,   Other),
    e("android-memtag-mode=",                         Joined,            TWO,   Other),
    e("android-memtag-mode",                          Separate,          TWO,   Other),
    e("android-memtag-stack",                         Flag,              TWO,   Other),
    e("apply-dynamic-relocs",                         Flag,              TWO,   Other),
    e("as-needed",                                    Flag,              BOTH,  AsNeeded),
    e("auxiliary=",                                   Joined,            BOTH,  Other),
    e("auxiliary",                                    Separate,          BOTH,  Other),
    e("Bdynamic",                                     Flag,              BOTH,  Bdynamic),
    e("be8",                                          Flag,              BOTH,  Other),
    e("Bno-symbolic",                                 Flag,              BOTH,  Other),
    e("bp-compression-sort-startup-functions",        Flag,              TWO,   Other),
    e("bp-compression-sort=",                         Joined,            TWO,   Other),
    e("bp-startup-sort=",                             Joined,            TWO,   Other),
    e("branch-to-branch",                             Flag,              TWO,   Other),
    e("Bshareable",                                   Flag,              BOTH,  Other),
    e("Bstatic",                                      Flag,              BOTH,  Bstatic),
    e("Bsymbolic-functions",                          Flag,              BOTH,  Other),
    e("Bsymbolic-non-weak-functions",                 Flag,              BOTH,  Other),
    e("Bsymbolic-non-weak",                           Flag,              BOTH,  Other),
    e("Bsymbolic",                                    Flag,              BOTH,  Other),
    e("build-id=",                                    Joined,            BOTH,  Other),
    e("build-id",                                     Flag,              BOTH,  Other),
    e("b",                                            Separate,          ONE,   Format),
    e("call-graph-ordering-file=",                    Joined,            BOTH,  Other),
    e("call-graph-ordering-file",                     Separate,          BOTH,  Other),
    e("call-graph-profile-sort=",                     Joined,            TWO,   Other),
    e("call_shared",                                  Flag,              BOTH,  Bdynamic),
    e("check-dynamic-relocations",                    Flag,              TWO,   Other),
    e("check-sections",                               Flag,              BOTH,  Other),
    e("chroot",                                       Separate,          TWO,   Chroot),
    e("cmse-implib",                                  Flag,              TWO,   Other),
    e("color-diagnostics=",                           Joined,            TWO,   Other),
    e("color-diagnostics",                            Flag,              TWO,   Other),
    e("compress-debug-sections=",                     Joined,            BOTH,  Other),
    e("compress-debug-sections",                      Separate,          BOTH,  Other),
    e("compress-sections=",                           Joined,            TWO,   Other),
    e("compress-sections",                            Separate,          TWO,   Other),
    e("cref",                                         Flag,              TWO,   Other),
    e("debug-names",                                  Flag,              TWO,   Other),
    e("default-script=",                              Joined,            TWO,   DefaultScript),
    e("default-script",                               Separate,          TWO,   DefaultScript),
    e("defsym=",                                      Joined,            BOTH,  Other),
    e("defsym",                                       Separate,          BOTH,  Other),
    e("demangle",                                     Flag,              BOTH,  Other),
    e("dependency-file=",                             Joined,            TWO,   Other),
    e("dependency-file",                              Separate,          TWO,   Other),
    e("dependent-libraries",                          Flag,              TWO,   Other),
    e("disable-new-dtags",                            Flag,              BOTH,  Other),
    e("disable-verify",                               Flag,              BOTH,  LtoOther),
    e("discard-all",                                  Flag,              BOTH,  Other),
    e("discard-locals",                               Flag,              BOTH,  Other),
    e("discard-none",                                 Flag,              BOTH,  Other),
    e("dn",                                           Flag,              BOTH,  Bstatic),
    e("dT",                                           Separate,          ONE,   DefaultScript),
    e("dynamic-linker=",                              Joined,            BOTH,  Other),
    e("dynamic-linker",                               Separate,          BOTH,  Other),
    e("dynamic-list=",                                Joined,            BOTH,  Other),
    e("dynamic-list",                                 Separate,          BOTH,  Other),
    e("dy",                                           Flag,              BOTH,  Bdynamic),
    e("d",                                            Flag,              ONE,   Other),
    e("EB",                                           Flag,              BOTH,  Other),
    e("eh-frame-hdr",                                 Flag,              BOTH,  Other),
    e("EL",                                           Flag,              BOTH,  Other),
    e("emit-relocs",                                  Flag,              BOTH,  Other),
    e("enable-new-dtags",                             Flag,              BOTH,  Other),
    e("enable-non-contiguous-regions",                Flag,              TWO,   Other),
    e("end-group",                                    Flag,              BOTH,  EndGroup),
    e("end-lib",                                      Flag,              BOTH,  EndLib),
    e("entry=",                                       Joined,            BOTH,  Other),
    e("entry",                                        Separate,          BOTH,  Other),
    e("error-handling-script=",                       Joined,            TWO,   Other),
    e("error-handling-script",                        Separate,          TWO,   Other),
    e("error-limit=",                                 Joined,            TWO,   Other),
    e("error-limit",                                  Separate,          TWO,   Other),
    e("error-unresolved-symbols",                     Flag,              BOTH,  Other),
    e("exclude-libs=",                                Joined,            BOTH,  Other),
    e("exclude-libs",                                 Separate,          BOTH,  Other),
    e("execute-only",                                 Flag,              TWO,   Other),
    e("export-dynamic-symbol-list=",                  Joined,            TWO,   Other),
    e("export-dynamic-symbol-list",                   Separate,          TWO,   Other),
    e("export-dynamic-symbol=",                       Joined,            TWO,   Other),
    e("export-dynamic-symbol",                        Separate,          TWO,   Other),
    e("export-dynamic",                               Flag,              BOTH,  Other),
    e("E",                                            Flag,              ONE,   Other),
    e("e",                                            JoinedOrSeparate,  ONE,   Other),
    e("fat-lto-objects",                              Flag,              TWO,   LtoOther),
    e("fatal-warnings",                               Flag,              BOTH,  Other),
    e("filter=",                                      Joined,            BOTH,  Other),
    e("filter",                                       Separate,          BOTH,  Other),
    e("fini=",                                        Joined,            BOTH,  Other),
    e("fini",                                         Separate,          BOTH,  Other),
    e("fix-cortex-a53-843419",                        Flag,              BOTH,  Other),
    e("fix-cortex-a8",                                Flag,              BOTH,  Other),
    e("force-group-allocation",                       Flag,              TWO,   Other),
    e("format=",                                      Joined,            BOTH,  Format),
    e("format",                                       Separate,          BOTH,  Format),
    e("fortran-common",                               Flag,              TWO,   Other),
    e("F",                                            Separate,          ONE,   Other),
    e("f",                                            Separate,          ONE,   Other),
    e("gc-sections",                                  Flag,              BOTH,  Other),
    e("gdb-index",                                    Flag,              TWO,   Other),
    e("gnu-unique",                                   Flag,              TWO,   Other),
    e("G",                                            JoinedOrSeparate,  ONE,   Other),
    e("g",                                            Flag,              ONE,   Other),
    e("hash-style=",                                  Joined,            BOTH,  Other),
    e("hash-style",                                   Separate,          BOTH,  Other),
    e("help",                                         Flag,              BOTH,  Help),
    e("h",                                            JoinedOrSeparate,  ONE,   Other),
    e("icf=all",                                      Flag,              BOTH,  Other),
    e("icf=none",                                     Flag,              BOTH,  Other),
    e("icf=safe",                                     Flag,              BOTH,  Other),
    e("ignore-data-address-equality",                 Flag,              TWO,   Other),
    e("ignore-function-address-equality",             Flag,              TWO,   Other),
    e("image-base=",                                  Joined,            TWO,   Other),
    e("image-base",                                   Separate,          TWO,   Other),
    e("in-implib=",                                   Joined,            TWO,   Other),
    e("in-implib",                                    Separate,          TWO,   Other),
    e("init=",                                        Joined,            BOTH,  Other),
    e("init",                                         Separate,          BOTH,  Other),
    e("irpgo-profile=",                               Joined,            TWO,   Other),
    e("irpgo-profile",                                Separate,          TWO,   Other),
    e("just-symbols=",                                Joined,            BOTH,  Other),
    e("just-symbols",                                 Separate,          BOTH,  Other),
    e("keep-unique=",                                 Joined,            BOTH,  Other),
    e("keep-unique",                                  Separate,          BOTH,  Other),
    e("library-path=",                                Joined,            BOTH,  LibraryPath),
    e("library-path",                                 Separate,          BOTH,  LibraryPath),
    e("library=",                                     Joined,            BOTH,  Library),
    e("library",                                      Separate,          BOTH,  Library),
    e("load-pass-plugin=",                            Joined,            TWO,   LtoOther),
    e("load-pass-plugin",                             Separate,          TWO,   LtoOther),
    e("long-plt",                                     Flag,              BOTH,  Other),
    e("lto-aa-pipeline=",                             Joined,            TWO,   LtoOther),
    e("lto-basic-block-address-map",                  Flag,              TWO,   LtoOther),
    e("lto-basic-block-sections=",                    Joined,            TWO,   LtoOther),
    e("lto-CGO",                                      Joined,            TWO,   LtoOther),
    e("lto-cs-profile-file=",                         Joined,            TWO,   LtoOther),
    e("lto-cs-profile-generate",                      Flag,              TWO,   LtoOther),
    e("lto-debug-pass-manager",                       Flag,              TWO,   LtoOther),
    e("lto-emit-asm",                                 Flag,              TWO,   LtoOther),
    e("lto-emit-llvm",                                Flag,              TWO,   LtoOther),
    e("lto-known-safe-vtables=",                      Joined,            TWO,   LtoOther),
    e("lto-known-safe-vtables",                       Separate,          TWO,   LtoOther),
    e("lto-newpm-passes=",                            Joined,            TWO,   LtoOther),
    e("lto-obj-path=",                                Joined,            TWO,   LtoOther),
    e("lto-O",                                        Joined,            TWO,   LtoOptLevel),
    e("lto-partitions=",                              Joined,            TWO,   LtoOther),
    e("lto-pgo-warn-mismatch",                        Flag,              TWO,   LtoOther),
    e("lto-sample-profile=",                          Joined,            TWO,   LtoOther),
    e("lto-unique-basic-block-section-names",         Flag,              TWO,   LtoOther),
    e("lto-validate-all-vtables-have-type-infos",     Flag,              TWO,   LtoOther),
    e("lto-whole-program-visibility",                 Flag,              TWO,   LtoOther),
    e("lto=",                                         Joined,            TWO,   LtoOther),
    e("L",                                            JoinedOrSeparate,  ONE,   LibraryPath),
    e("l",                                            JoinedOrSeparate,  ONE,   Library),
    e("Map=",                                         Joined,            BOTH,  Other),
    e("Map",                                          Separate,          BOTH,  Other),
    e("merge-exidx-entries",                          Flag,              BOTH,  Other),
    e("mips-got-size=",                               Joined,            BOTH,  Other),
    e("mips-got-size",                                Separate,          BOTH,  Other),
    e("mllvm=",                                       Joined,            BOTH,  Mllvm),
    e("mllvm",                                        Separate,          BOTH,  Mllvm),
    e("mmap-output-file",                             Flag,              TWO,   Other),
    e("M",                                            Flag,              ONE,   Other),
    e("m",                                            JoinedOrSeparate,  ONE,   Emulation),
    e("nmagic",                                       Flag,              BOTH,  Nmagic),
    e("no-add-needed",                                Flag,              TWO,   Other),
    e("no-allow-multiple-definition",                 Flag,              BOTH,  Other),
    e("no-allow-shlib-undefined",                     Flag,              BOTH,  Other),
    e("no-android-memtag-heap",                       Flag,              TWO,   Other),
    e("no-android-memtag-stack",                      Flag,              TWO,   Other),
    e("no-apply-dynamic-relocs",                      Flag,              TWO,   Other),
    e("no-as-needed",                                 Flag,              BOTH,  NoAsNeeded),
    e("no-bp-compression-sort-startup-functions",     Flag,              TWO,   Other),
    e("no-branch-to-branch",                          Flag,              TWO,   Other),
    e("no-call-graph-profile-sort",                   Flag,              TWO,   Other),
    e("no-check-dynamic-relocations",                 Flag,              TWO,   Other),
    e("no-check-sections",                            Flag,              BOTH,  Other),
    e("no-color-diagnostics",                         Flag,              TWO,   Other),
    e("no-copy-dt-needed-entries",                    Flag,              BOTH,  Other),
    e("no-ctors-in-init-array",                       Flag,              BOTH,  Other),
    e("no-debug-names",                               Flag,              TWO,   Other),
    e("no-demangle",                                  Flag,              BOTH,  Other),
    e("no-dependent-libraries",                       Flag,              TWO,   Other),
    e("no-dynamic-linker",                            Flag,              BOTH,  Other),
    e("no-eh-frame-hdr",                              Flag,              BOTH,  Other),
    e("no-execute-only",                              Flag,              TWO,   Other),
    e("no-export-dynamic",                            Flag,              BOTH,  Other),
    e("no-fat-lto-objects",                           Flag,              TWO,   LtoOther),
    e("no-fatal-warnings",                            Flag,              BOTH,  Other),
    e("no-fortran-common",                            Flag,              TWO,   Other),
    e("no-gc-sections",                               Flag,              BOTH,  Other),
    e("no-gdb-index",                                 Flag,              TWO,   Other),
    e("no-gnu-unique",                                Flag,              TWO,   Other),
    e("no-keep-memory",                               Flag,              BOTH,  Other),
    e("no-lto-basic-block-address-map",               Flag,              TWO,   LtoOther),
    e("no-lto-pgo-warn-mismatch",                     Flag,              TWO,   LtoOther),
    e("no-lto-unique-basic-block-section-names",      Flag,              TWO,   LtoOther),
    e("no-lto-validate-all-vtables-have-type-infos",  Flag,              TWO,   LtoOther),
    e("no-lto-whole-program-visibility",              Flag,              TWO,   LtoOther),
    e("no-merge-exidx-entries",                       Flag,              BOTH,  Other),
    e("no-mmap-output-file",                          Flag,              TWO,   Other),
    e("no-nmagic",                                    Flag,              BOTH,  Other),
    e("no-omagic",                                    Flag,              BOTH,  Other),
    e("no-optimize-bb-jumps",                         Flag,              TWO,   Other),
    e("no-pcrel-optimize",                            Flag,              TWO,   Other),
    e("no-pie",                                       Flag,              BOTH,  Other),
    e("no-power10-stubs",                             Flag,              TWO,   Other),
    e("no-print-gc-sections",                         Flag,              BOTH,  Other),
    e("no-print-icf-sections",                        Flag,              BOTH,  Other),
    e("no-relax-gp",                                  Flag,              TWO,   Other),
    e("no-relax",                                     Flag,              TWO,   Other),
    e("no-rosegment",                                 Flag,              TWO,   Other),
    e("no-toc-optimize",                              Flag,              TWO,   Other),
    e("no-undefined-version",                         Flag,              BOTH,  Other),
    e("no-undefined",                                 Flag,              BOTH,  Other),
    e("no-use-android-relr-tags",                     Flag,              TWO,   Other),
    e("no-warn-backrefs",                             Flag,              TWO,   Other),
    e("no-warn-common",                               Flag,              BOTH,  Other),
    e("no-warn-ifunc-textrel",                        Flag,              TWO,   Other),
    e("no-warn-mismatch",                             Flag,              BOTH,  Other),
    e("no-warn-symbol-ordering",                      Flag,              TWO,   Other),
    e("no-warnings",                                  Flag,              TWO,   Other),
    e("no-whole-archive",                             Flag,              BOTH,  NoWholeArchive),
    e("no-xosegment",                                 Flag,              TWO,   Other),
    e("noinhibit-exec",                               Flag,              BOTH,  Other),
    e("non_shared",                                   Flag,              BOTH,  Bstatic),
    e("nostdlib",                                     Flag,              BOTH,  Other),
    e("N",                                            Flag,              ONE,   Omagic),
    e("n",                                            Flag,              ONE,   Nmagic),
    e("oformat=",                                     Joined,            TWO,   Other),
    e("oformat",                                      Separate,          TWO,   Other),
    e("omagic",                                       Flag,              TWO,   Omagic),
    e("opt-remarks-filename",                         Separate,          TWO,   LtoOther),
    e("opt-remarks-format",                           Separate,          TWO,   LtoOther),
    e("opt-remarks-hotness-threshold=",               Joined,            TWO,   LtoOther),
    e("opt-remarks-hotness-threshold",                Separate,          TWO,   LtoOther),
    e("opt-remarks-passes",                           Separate,          TWO,   LtoOther),
    e("opt-remarks-with-hotness",                     Flag,              TWO,   LtoOther),
    e("optimize-bb-jumps",                            Flag,              TWO,   Other),
    e("orphan-handling=",                             Joined,            BOTH,  Other),
    e("orphan-handling",                              Separate,          BOTH,  Other),
    e("out-implib=",                                  Joined,            TWO,   Other),
    e("out-implib",                                   Separate,          TWO,   Other),
    e("output=",                                      Joined,            TWO,   Output),
    e("output",                                       Separate,          TWO,   Output),
    e("O",                                            JoinedOrSeparate,  ONE,   Other),
    e("o",                                            JoinedOrSeparate,  ONE,   Output),
    e("pack-dyn-relocs=",                             Joined,            TWO,   Other),
    e("pack-dyn-relocs",                              Separate,          TWO,   Other),
    e("package-metadata=",                            Joined,            TWO,   Other),
    e("pcrel-optimize",                               Flag,              TWO,   Other),
    e("pic-executable",                               Flag,              BOTH,  Other),
    e("pic-veneer",                                   Flag,              BOTH,  Other),
    e("pie",                                          Flag,              BOTH,  Other),
    e("plugin-opt=-fresolution=",                     Joined,            BOTH,  PluginOpt),
    e("plugin-opt=-pass-through=",                    Joined,            BOTH,  PluginOpt),
    e("plugin-opt=-",                                 Joined,            BOTH,  PluginOpt),
    e("plugin-opt=cs-profile-generate",               Flag,              BOTH,  PluginOpt),
    e("plugin-opt=cs-profile-path=",                  Joined,            BOTH,  PluginOpt),
    e("plugin-opt=debug-pass-manager",                Flag,              BOTH,  PluginOpt),
    e("plugin-opt=disable-verify",                    Flag,              BOTH,  PluginOpt),
    e("plugin-opt=dwo_dir=",                          Joined,            BOTH,  PluginOpt),
    e("plugin-opt=emit-asm",                          Flag,              BOTH,  PluginOpt),
    e("plugin-opt=emit-llvm",                         Flag,              BOTH,  PluginOpt),
    e("plugin-opt=jobs=",                             Joined,            BOTH,  PluginOpt),
    e("plugin-opt=lto-partitions=",                   Joined,            BOTH,  PluginOpt),
    e("plugin-opt=mcpu=",                             Joined,            BOTH,  PluginOpt),
    e("plugin-opt=obj-path=",                         Joined,            BOTH,  PluginOpt),
    e("plugin-opt=opt-remarks-filename=",             Joined,            BOTH,  PluginOpt),
    e("plugin-opt=opt-remarks-format=",               Joined,            BOTH,  PluginOpt),
    e("plugin-opt=opt-remarks-hotness-threshold=",    Joined,            BOTH,  PluginOpt),
    e("plugin-opt=opt-remarks-passes=",               Joined,            BOTH,  PluginOpt),
    e("plugin-opt=opt-remarks-with-hotness",          Flag,              BOTH,  PluginOpt),
    e("plugin-opt=O",                                 Joined,            BOTH,  PluginOpt),
    e("plugin-opt=sample-profile=",                   Joined,            BOTH,  PluginOpt),
    e("plugin-opt=save-temps",                        Flag,              BOTH,  PluginOpt),
    e("plugin-opt=stats-file=",                       Joined,            BOTH,  PluginOpt),
    e("plugin-opt=thinlto-emit-imports-files",        Flag,              BOTH,  PluginOpt),
    e("plugin-opt=thinlto-index-only=",               Joined,            BOTH,  PluginOpt),
    e("plugin-opt=thinlto-index-only",                Flag,              BOTH,  PluginOpt),
    e("plugin-opt=thinlto-object-suffix-replace=",    Joined,            BOTH,  PluginOpt),
    e("plugin-opt=thinlto-prefix-replace=",           Joined,            BOTH,  PluginOpt),
    e("plugin-opt=thinlto",                           Joined,            BOTH,  PluginOpt),
    e("plugin-opt=time-trace=",                       Joined,            BOTH,  PluginOpt),
    e("plugin-opt=",                                  Joined,            BOTH,  PluginOpt),
    e("plugin=",                                      Joined,            BOTH,  Other),
    e("plugin",                                       Separate,          BOTH,  Other),
    e("pop-state",                                    Flag,              BOTH,  PopState),
    e("power10-stubs=",                               Joined,            TWO,   Other),
    e("power10-stubs",                                Flag,              TWO,   Other),
    e("print-archive-stats=",                         Joined,            BOTH,  Other),
    e("print-gc-sections=",                           Joined,            TWO,   Other),
    e("print-gc-sections",                            Flag,              BOTH,  Other),
    e("print-icf-sections",                           Flag,              BOTH,  Other),
    e("print-map",                                    Flag,              BOTH,  Other),
    e("print-memory-usage",                           Flag,              BOTH,  Other),
    e("print-symbol-order=",                          Joined,            BOTH,  Other),
    e("print-symbol-order",                           Separate,          BOTH,  Other),
    e("push-state",                                   Flag,              BOTH,  PushState),
    e("q",                                            Flag,              ONE,   Other),
    e("randomize-section-padding=",                   Joined,            TWO,   Other),
    e("relax-gp",                                     Flag,              TWO,   Other),
    e("relax",                                        Flag,              TWO,   Other),
    e("relocatable",                                  Flag,              BOTH,  Relocatable),
    e("remap-inputs-file=",                           Joined,            TWO,   Other),
    e("remap-inputs=",                                Joined,            TWO,   Other),
    e("remap-inputs",                                 Separate,          TWO,   Other),
    e("reproduce=",                                   Joined,            TWO,   Other),
    e("reproduce",                                    Separate,          TWO,   Other),
    e("retain-symbols-file=",                         Joined,            BOTH,  Other),
    e("retain-symbols-file",                          Separate,          BOTH,  Other),
    e("rosegment",                                    Flag,              TWO,   Other),
    e("rpath-link=",                                  Joined,            BOTH,  Other),
    e("rpath-link",                                   Separate,          BOTH,  Other),
    e("rpath=",                                       Joined,            BOTH,  Other),
    e("rpath",                                        Separate,          BOTH,  Other),
    e("rsp-quoting=",                                 Joined,            TWO,   RspQuoting),
    e("rsp-quoting",                                  Separate,          TWO,   RspQuoting),
    e("R",                                            JoinedOrSeparate,  ONE,   Other),
    e("r",                                            Flag,              ONE,   Relocatable),
    e("save-temps=",                                  Joined,            TWO,   LtoOther),
    e("save-temps",                                   Flag,              BOTH,  LtoOther),
    e("script=",                                      Joined,            BOTH,  Script),
    e("script",                                       Separate,          BOTH,  Script),
    e("section-start=",                               Joined,            BOTH,  Other),
    e("section-start",                                Separate,          BOTH,  Other),
    e("secure-plt",                                   Flag,              BOTH,  Other),
    e("shared",                                       Flag,              BOTH,  Other),
    e("shuffle-sections=",                            Joined,            TWO,   Other),
    e("shuffle-sections",                             Separate,          TWO,   Other),
    e("soname=",                                      Joined,            BOTH,  Other),
    e("soname",                                       Separate,          BOTH,  Other),
    e("sort-common",                                  Flag,              BOTH,  Other),
    e("sort-section=",                                Joined,            BOTH,  Other),
    e("sort-section",                                 Separate,          BOTH,  Other),
    e("split-stack-adjust-size=",                     Joined,            BOTH,  Other),
    e("split-stack-adjust-size",                      Separate,          BOTH,  Other),
    e("start-group",                                  Flag,              BOTH,  StartGroup),
    e("start-lib",                                    Flag,              BOTH,  StartLib),
    e("static",                                       Flag,              BOTH,  Bstatic),
    e("stats",                                        Flag,              BOTH,  Other),
    e("strip-all",                                    Flag,              BOTH,  Other),
    e("strip-debug",                                  Flag,              BOTH,  Other),
    e("symbol-ordering-file=",                        Joined,            TWO,   Other),
    e("symbol-ordering-file",                         Separate,          TWO,   Other),
    e("sysroot=",                                     Joined,            BOTH,  Sysroot),
    e("sysroot",                                      Separate,          BOTH,  Sysroot),
    e("S",                                            Flag,              ONE,   Other),
    e("s",                                            Flag,              ONE,   Other),
    e("target1-abs",                                  Flag,              BOTH,  Other),
    e("target1-rel",                                  Flag,              BOTH,  Other),
    e("target2=",                                     Joined,            BOTH,  Other),
    e("target2",                                      Separate,          BOTH,  Other),
    e("Tbss=",                                        Joined,            BOTH,  Other),
    e("Tbss",                                         Separate,          BOTH,  Other),
    e("Tdata=",                                       Joined,            BOTH,  Other),
    e("Tdata",                                        Separate,          BOTH,  Other),
    e("thinlto-cache-dir=",                           Joined,            TWO,   Other),
    e("thinlto-cache-policy=",                        Joined,            TWO,   Other),
    e("thinlto-cache-policy",                         Separate,          TWO,   Other),
    e("thinlto-distributor-arg=",                     Joined,            TWO,   Other),
    e("thinlto-distributor-arg",                      Separate,          TWO,   Other),
    e("thinlto-distributor=",                         Joined,            TWO,   ThinltoDistributor),
    e("thinlto-emit-imports-files",                   Flag,              TWO,   Other),
    e("thinlto-emit-index-files",                     Flag,              TWO,   Other),
    e("thinlto-index-only=",                          Joined,            TWO,   ThinltoIndexOnly),
    e("thinlto-index-only",                           Flag,              TWO,   ThinltoIndexOnly),
    e("thinlto-jobs=",                                Joined,            TWO,   Other),
    e("thinlto-object-suffix-replace=",               Joined,            TWO,   Other),
    e("thinlto-prefix-replace=",                      Joined,            TWO,   Other),
    e("thinlto-remote-compiler-arg=",                 Joined,            TWO,   Other),
    e("thinlto-remote-compiler-arg",                  Separate,          TWO,   Other),
    e("thinlto-remote-compiler-prepend-arg=",         Joined,            TWO,   Other),
    e("thinlto-remote-compiler-prepend-arg",          Separate,          TWO,   Other),
    e("thinlto-remote-compiler=",                     Joined,            TWO,   Other),
    e("thinlto-single-module=",                       Joined,            TWO,   Other),
    e("threads=",                                     Joined,            TWO,   Other),
    e("threads",                                      Separate,          TWO,   Other),
    e("time-trace-granularity=",                      Joined,            TWO,   Other),
    e("time-trace-granularity",                       Separate,          TWO,   Other),
    e("time-trace=",                                  Joined,            TWO,   Other),
    e("time-trace",                                   Flag,              TWO,   Other),
    e("toc-optimize",                                 Flag,              TWO,   Other),
    e("trace-symbol=",                                Joined,            BOTH,  Other),
    e("trace-symbol",                                 Separate,          BOTH,  Other),
    e("trace",                                        Flag,              BOTH,  Other),
    e("Ttext-segment=",                               Joined,            BOTH,  Other),
    e("Ttext-segment",                                Separate,          BOTH,  Other),
    e("Ttext=",                                       Joined,            BOTH,  Other),
    e("Ttext",                                        Separate,          BOTH,  Other),
    e("T",                                            JoinedOrSeparate,  ONE,   Script),
    e("t",                                            Flag,              ONE,   Other),
    e("undefined-glob=",                              Joined,            TWO,   Other),
    e("undefined-glob",                               Separate,          TWO,   Other),
    e("undefined-version",                            Flag,              BOTH,  Other),
    e("undefined=",                                   Joined,            BOTH,  Other),
    e("undefined",                                    Separate,          BOTH,  Other),
    e("unique",                                       Flag,              BOTH,  Other),
    e("unresolved-symbols=",                          Joined,            BOTH,  Other),
    e("unresolved-symbols",                           Separate,          BOTH,  Other),
    e("use-android-relr-tags",                        Flag,              TWO,   Other),
    e("u",                                            JoinedOrSeparate,  ONE,   Other),
    e("verbose-bp-section-orderer",                   Flag,              TWO,   Other),
    e("verbose",                                      Flag,              BOTH,  Other),
    e("version-script=",                              Joined,            BOTH,  Other),
    e("version-script",                               Separate,          BOTH,  Other),
    e("version",                                      Flag,              BOTH,  Version),
    e("vs-diagnostics",                               Flag,              TWO,   Other),
    e("V",                                            Flag,              ONE,   Version),
    e("v",                                            Flag,              ONE,   Version),
    e("warn-backrefs-exclude=",                       Joined,            TWO,   Other),
    e("warn-backrefs-exclude",                        Separate,          TWO,   Other),
    e("warn-backrefs",                                Flag,              TWO,   Other),
    e("warn-common",                                  Flag,              BOTH,  Other),
    e("warn-execstack",                               Flag,              BOTH,  Other),
    e("warn-ifunc-textrel",                           Flag,              TWO,   Other),
    e("warn-once",                                    Flag,              BOTH,  Other),
    e("warn-shared-textrel",                          Flag,              BOTH,  Other),
    e("warn-symbol-ordering",                         Flag,              TWO,   Other),
    e("warn-unresolved-symbols",                      Flag,              BOTH,  Other),
    e("whole-archive",                                Flag,              BOTH,  WholeArchive),
    e("why-extract=",                                 Joined,            TWO,   Other),
    e("why-live=",                                    Joined,            TWO,   Other),
    e("why-live",                                     Separate,          TWO,   Other),
    e("wrap=",                                        Joined,            BOTH,  Other),
    e("wrap",                                         Separate,          BOTH,  Other),
    e("w",                                            Flag,              ONE,   Other),
    e("xosegment",                                    Flag,              TWO,   Other),
    e("X",                                            Flag,              ONE,   Other),
    e("x",                                            Flag,              ONE,   Other),
    e("y",                                            JoinedOrSeparate,  ONE,   Other),
    e("z",                                            JoinedOrSeparate,  ONE,   Other),
];

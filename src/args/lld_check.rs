//! The option table and the tokenizer checked against the installed ld.lld 22:
//! its option names (read from the binary), its `--help`, and how it really
//! splits argv and response files. lld 22's Options.td is not vendored here;
//! the binary is the truth these tests use.
//!
//! Set KDTHIN_TEST_LLD to pick the linker. Without ld.lld 22 the tests print
//! why and pass, unless KDTHIN_REQUIRE_TOOLS=1 (as in CI): then they fail.

use super::rsp::write_rsp;
use super::table::{OptInfo, OptKind, OPTIONS};
use super::{ArgKind, CommandLine, OptId};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// ld.lld 22, or None (and the reason printed); a failure when
/// KDTHIN_REQUIRE_TOOLS=1.
fn lld() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KDTHIN_TEST_LLD") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["ld.lld-22", "ld.lld"] {
        for dir in std::env::split_paths(&path) {
            let exe = dir.join(name);
            let Ok(out) = Command::new(&exe).arg("--version").output() else { continue };
            if String::from_utf8_lossy(&out.stdout).contains("LLD 22.") {
                return Some(exe);
            }
        }
    }
    let why = "no ld.lld 22 on PATH (set KDTHIN_TEST_LLD)";
    if std::env::var_os("KDTHIN_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("{why}, and KDTHIN_REQUIRE_TOOLS=1");
    }
    eprintln!("skipped: {why}");
    None
}

fn run(lld: &Path, cwd: &Path, args: &[OsString]) -> Output {
    Command::new(lld).args(args).current_dir(cwd).stdin(Stdio::null()).output().expect("run ld.lld")
}

/// The tokens lld names in "unknown argument 'X'" errors.
fn unknown_arguments(stderr: &[u8]) -> BTreeSet<String> {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .filter_map(|l| l.split_once("unknown argument '")?.1.split_once('\'').map(|(tok, _)| tok.to_string()))
        .collect()
}

fn entry(name: &str) -> Option<&'static OptInfo> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// lld's own list of option spellings (each with its first accepted dash
/// prefix), from the option name table in the binary. None if the layout
/// is not the one LLVM 22 uses.
fn lld_option_names(lld: &Path) -> Option<Vec<String>> {
    let bin = std::fs::read(std::fs::canonicalize(lld).ok()?).ok()?;
    // Each OptTable's strings start with its prefixes and two pseudo options.
    let marker = b"\0-\0--\0<input>\0<unknown>\0";
    let tables = (0..bin.len().saturating_sub(marker.len())).filter(|&i| bin[i..].starts_with(marker)).map(|i| {
        bin[i + marker.len()..]
            .split(|&b| b == 0)
            .take_while(|s| s.starts_with(b"-"))
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
    });
    // The ELF driver's is the one with GNU ld's `-(` and --push-state.
    let mut elf = tables.filter(|t| t.iter().any(|n| n == "-(") && t.iter().any(|n| n == "--push-state"));
    elf.next()
}

#[test]
fn table_has_exactly_lld_options() {
    let Some(lld) = lld() else { return };
    // An ld.lld 22 whose table this cannot find means the reader is out of
    // date, not that there is nothing to check.
    let Some(names) = lld_option_names(&lld) else {
        panic!("no LLVM 22 option table found in {} (lld_option_names needs updating?)", lld.display());
    };
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for spelled in &names {
        let name = spelled.trim_start_matches('-');
        let two = spelled.starts_with("--");
        seen.insert(name);
        match entry(name) {
            None => problems.push(format!("{spelled}: missing from OPTIONS")),
            Some(o) if !(if two { o.double_dash } else { o.single_dash }) => {
                problems.push(format!("{spelled}: OPTIONS does not accept this spelling"))
            }
            _ => {}
        }
    }
    for o in OPTIONS {
        if !seen.contains(o.name) {
            problems.push(format!("{}: in OPTIONS but not in {}", o.name, lld.display()));
        }
    }
    assert!(names.len() > 400, "only {} names found", names.len());
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Every LTO option of the installed ld.lld (any spelling naming `lto`,
/// `-plugin-opt=` or `-mllvm`) has a row in the plan's table of what the
/// backends get for it: a new LTO option can never be silently dropped.
#[test]
fn every_lto_option_of_the_installed_lld_has_a_row() {
    let Some(lld) = lld() else { return };
    let Some(names) = lld_option_names(&lld) else {
        panic!("no LLVM 22 option table found in {}", lld.display());
    };
    let lto: Vec<&str> = names
        .iter()
        .map(|n| n.trim_start_matches('-'))
        .filter(|n| n.contains("lto") || n.starts_with("plugin-opt") || n.starts_with("mllvm"))
        .collect();
    assert!(lto.len() > 60, "only {} LTO options found: {lto:?}", lto.len());
    let missing: Vec<&&str> = lto.iter().filter(|n| crate::plan::codegen::row_for(n).is_none()).collect();
    assert!(missing.is_empty(), "LTO options of {} without a row in LTO_OPTIONS: {missing:?}", lld.display());
}

#[test]
fn table_agrees_with_lld_help() {
    let Some(lld) = lld() else { return };
    let help = run(&lld, Path::new("."), &["--help".into()]);
    let help = String::from_utf8_lossy(&help.stdout);
    let mut problems = Vec::new();
    let mut checked = 0;
    // `  --name=<meta>`, `  --lto-O<meta>` or `  --name=meta`: joined;
    // `  -o <meta>`: takes the next argument (or a joined one);
    // `  --name  Help`: a flag (`--icf=all` is one too).
    const JOINED: &[OptKind] = &[OptKind::Joined];
    const SEPARATE: &[OptKind] = &[OptKind::Separate, OptKind::JoinedOrSeparate];
    for line in help.lines().filter(|l| l.starts_with("  -")) {
        let line = &line[2..];
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let bare_meta = word.find('=').filter(|_| entry(word.trim_start_matches('-')).is_none());
        let (spelled, want) = match word.find(['<', '[']) {
            Some(i) if i > 0 => (&word[..i], JOINED),
            _ if rest.starts_with('<') || rest.starts_with('[') => (word, SEPARATE),
            _ => match bare_meta {
                Some(eq) => (&word[..=eq], JOINED),
                None => (word, &[OptKind::Flag][..]),
            },
        };
        checked += 1;
        let two = spelled.starts_with("--");
        match entry(spelled.trim_start_matches('-')) {
            None => problems.push(format!("{line}: not in OPTIONS")),
            Some(o) if !want.contains(&o.kind) => problems.push(format!("{line}: OPTIONS says {:?}", o.kind)),
            Some(o) if !(if two { o.double_dash } else { o.single_dash }) => {
                problems.push(format!("{line}: OPTIONS rejects this spelling"))
            }
            _ => {}
        }
    }
    assert!(checked > 300, "only {checked} options in --help");
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Every option spelled with one and two dashes, bare and with text
/// appended, plus oddities: lld and `CommandLine::parse` must agree on
/// which are unknown and on which take the next argument as a value. Each
/// probe is followed by an unknown sentinel: if it is not reported, the
/// probe ate it.
#[test]
fn argv_splitting_agrees_with_lld() {
    let Some(lld) = lld() else { return };
    let mut probes: Vec<String> =
        ["-", "--", "---o", "-=", "-plugin-opt", "--plugin-opt", "--plugin-opt=", "-Bstaticx"]
            .into_iter()
            .map(String::from)
            .collect();
    for o in OPTIONS {
        for dashes in ["-", "--"] {
            probes.push(format!("{dashes}{}", o.name));
            probes.push(format!("{dashes}{}zz", o.name));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    // lld stops after 20 errors while parsing; a probe makes at most two.
    let batches: Vec<&[String]> = probes.chunks(8).collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
    let problems: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (batches, lld, dir) = (&batches, &lld, dir.path());
                s.spawn(move || {
                    let mut problems = Vec::new();
                    for batch in batches.iter().skip(t).step_by(threads) {
                        let mut argv = Vec::new();
                        for (i, p) in batch.iter().enumerate() {
                            argv.push(OsString::from(p));
                            argv.push(OsString::from(format!("--kdthin-sentinel-{i}")));
                        }
                        let theirs = unknown_arguments(&run(lld, dir, &argv).stderr);
                        let ours: BTreeSet<String> = CommandLine::parse(&argv)
                            .unwrap()
                            .args
                            .iter()
                            .filter(|a| a.kind == ArgKind::Unknown)
                            .map(|a| a.tokens[0].to_string_lossy().into_owned())
                            .collect();
                        if theirs != ours {
                            problems.push(format!("{batch:?}: lld {theirs:?}, ours {ours:?}"));
                        }
                    }
                    problems
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    assert!(problems.is_empty(), "{problems:#?}");
}

/// `response.txt` from a `--reproduce` tarball: lld's canonical form of
/// each argument it parsed, one per line (aliases resolved, e.g. `-static`
/// is `--Bstatic`). lld writes it even when the link then fails.
fn reproduce_lines(lld: &Path, dir: &Path, args: &[OsString]) -> Vec<String> {
    let tar = dir.join("r.tar");
    let _ = std::fs::remove_file(&tar);
    // Last, so that a probe cannot change where the tarball goes.
    let mut args = args.to_vec();
    args.push("--reproduce=r.tar".into());
    run(lld, dir, &args);
    let tar = std::fs::read(&tar).expect("lld wrote no --reproduce tarball");
    // ustar: 512-byte headers (name at 0, octal size at 124), data padded to 512.
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at] != 0 {
        let name = String::from_utf8_lossy(&tar[at..at + 100]);
        let size = std::str::from_utf8(&tar[at + 124..at + 136]).unwrap().trim_matches(['\0', ' ']);
        let size = usize::from_str_radix(size, 8).unwrap();
        if name.trim_end_matches('\0').ends_with("/response.txt") {
            let text = String::from_utf8_lossy(&tar[at + 512..at + 512 + size]);
            return text.lines().map(String::from).collect();
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    panic!("no response.txt in the --reproduce tarball");
}

/// Which option a token is, not just its arity: for every probe both sides
/// know, lld must read it the same as our unambiguous spelling of what we
/// read (`-omagic` is `-o magic` to lld; if the table let `omagic` take one
/// dash, we would write `--omagic` and lld would disagree).
#[test]
fn option_identity_agrees_with_lld() {
    let Some(lld) = lld() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (mut probes, mut ours) = (Vec::new(), Vec::new());
    for o in OPTIONS {
        // These end the link before the tarball is written, or move it.
        if ["help", "version", "reproduce", "reproduce="].contains(&o.name) {
            continue;
        }
        for spelled in ["-", "--"].map(|d| format!("{d}{}", o.name)) {
            let probe = [OsString::from(&spelled), "vv".into()];
            let cl = CommandLine::parse(&probe).unwrap();
            let (arg, Some(info)) = (&cl.args[0], cl.args[0].opt_info()) else { continue };
            let ArgKind::Opt { value, .. } = &arg.kind else { unreachable!() };
            let dashes = if info.double_dash { "--" } else { "-" };
            let value = value.clone().unwrap_or_default().into_string().unwrap();
            let respelled = match info.kind {
                _ if info.id == OptId::PluginOpt => vec![format!("{dashes}plugin-opt={value}")],
                OptKind::Flag => vec![format!("{dashes}{}", info.name)],
                OptKind::Joined => vec![format!("{dashes}{}{value}", info.name)],
                OptKind::Separate | OptKind::JoinedOrSeparate => vec![format!("{dashes}{}", info.name), value],
            };
            probes.extend(arg.tokens.iter().cloned());
            ours.extend(respelled.into_iter().map(OsString::from));
        }
    }
    assert!(probes.len() > 500);
    // lld keeps the dashes as typed: compare what follows them.
    let read = |args: &[OsString]| -> Vec<String> {
        let lines = reproduce_lines(&lld, dir.path(), args);
        lines.iter().map(|l| l.trim_start_matches('-').to_string()).collect()
    };
    let (theirs, ours) = (read(&probes), read(&ours));
    let diff: Vec<_> = theirs.iter().zip(&ours).filter(|(t, o)| t != o).collect();
    assert!(diff.is_empty() && theirs.len() == ours.len(), "lld read the probe as / lld read ours as: {diff:#?}");
}

/// lld's response-file reading, seen through the inputs it fails to open.
#[test]
fn response_files_read_like_lld() {
    let Some(lld) = lld() else { return };
    let dir = tempfile::tempdir().unwrap();
    let written = write_rsp(
        &["plain", "with space", "tab\tx", "dq\"x", "sq'x", "back\\slash", "end\\", "ünï"].map(OsString::from),
    );
    let texts: [&[u8]; 5] = [
        br#"a "" b "c d"e\ f 'g\h' i\\j "k\"l" m\"#,
        b"unterminated \"quote here",
        b"p\rq\tr\x0bs\x0ct\n  x\0y z",
        b"\xEF\xBB\xBFbom x 'a'\"b\"c",
        written.as_bytes(),
    ];
    for text in texts {
        let file = dir.path().join("t.rsp");
        std::fs::write(&file, text).unwrap();
        let out = run(&lld, dir.path(), &["--error-limit=0".into(), "@t.rsp".into()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let theirs: Vec<&str> = stderr
            .lines()
            .filter_map(|l| l.split_once("cannot open ")?.1.strip_suffix(": No such file or directory"))
            .collect();
        let ours = CommandLine::parse_in(&["@t.rsp".into()], dir.path()).unwrap().render_flat(&mut |_, _| None);
        let ours: Vec<_> = ours.iter().map(|t| t.to_string_lossy()).collect();
        assert_eq!(theirs, ours, "{}", String::from_utf8_lossy(text));
    }
}

#[test]
fn table_is_consistent() {
    let mut seen = BTreeSet::new();
    for o in OPTIONS {
        assert!(seen.insert(o.name), "{} twice", o.name);
        assert!(o.single_dash || o.double_dash, "{}", o.name);
        assert!(!o.name.starts_with('-'), "{}", o.name);
        if o.name.ends_with('=') {
            assert_eq!(o.kind, OptKind::Joined, "{}", o.name);
        }
        // GNU-style single letters take one dash only.
        if o.name.chars().count() == 1 {
            assert!(o.single_dash && !o.double_dash, "{}", o.name);
        }
    }
}

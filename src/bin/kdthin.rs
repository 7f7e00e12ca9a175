//! `kdthin`: the management command of kdthin-ld.
//!
//! A separate program because kdthin-ld itself must accept exactly
//! ld.lld's command line (kbuild probes `$(LD) --version` and expects lld's
//! banner): nothing can be added to it without colliding one day.
//!
//! Exit status: 0 success, 1 the command failed, 2 bad usage.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};

use kdthin::cache::{self, CacheSettings};
use kdthin::env::Env;
use kdthin::exec::forkserver::ForkServerSetting;
use kdthin::exec::slots::{Chosen, JobsSource, Slots};
use kdthin::settings::Settings;
use kdthin::toolchain::{find_real_ld, LookupEnv};

const USAGE: &str = "\
usage: kdthin <command> [arguments]

commands:
  version             print the version of kdthin and kdthin-ld
  config              print the configuration kdthin-ld would use here
                      (real ld.lld, jobs, trace/report, cache); exits 1
                      if no real ld.lld can be found
  report FILE         summarise a KDTHIN_REPORT or KDTHIN_TRACE file:
                      per-link times and the slowest backends
  cache stats         print the backend cache's size and hit counts
  cache clear         remove every cache entry (the counts are kept)
  cache zero-stats    reset the cache's hit counts
  distribute JOBS     run a DTLTO job list for ld.lld --thinlto-distributor
                      (add --thinlto-distributor-arg=distribute), through
                      kdthin-ld's executors, cache and .cmd flags
  help                print this help

kdthin-ld is used as the kernel's linker: make LLVM=1 LD=kdthin-ld
See kdthin(1) and kdthin-ld(1).
";

#[derive(Debug, PartialEq)]
enum Command {
    Version,
    Config,
    Report(PathBuf),
    CacheStats,
    CacheClear,
    CacheZeroStats,
    Distribute(PathBuf),
    Help,
}

/// A usage error, printed with a pointer to `kdthin help`.
#[derive(Debug, PartialEq)]
struct Usage(String);

fn parse(args: &[OsString]) -> Result<Command, Usage> {
    let words: Vec<&str> = args
        .iter()
        .map(|a| a.to_str().ok_or_else(|| Usage(format!("argument is not UTF-8: {a:?}"))))
        .collect::<Result<_, _>>()?;
    let none = |cmd: Command, rest: &[&str]| match rest {
        [] => Ok(cmd),
        [extra, ..] => Err(Usage(format!("unexpected argument {extra:?}"))),
    };
    match words.as_slice() {
        [] => Err(Usage("no command given".into())),
        ["version" | "--version" | "-V", rest @ ..] => none(Command::Version, rest),
        ["help" | "--help" | "-h", ..] => Ok(Command::Help),
        ["config", rest @ ..] => none(Command::Config, rest),
        ["report", file] => Ok(Command::Report(PathBuf::from(file))),
        ["report"] => Err(Usage("report: which file? (kdthin report FILE)".into())),
        ["report", _, extra, ..] => Err(Usage(format!("report: unexpected argument {extra:?}"))),
        ["cache", "stats", rest @ ..] => none(Command::CacheStats, rest),
        ["cache", "clear", rest @ ..] => none(Command::CacheClear, rest),
        ["cache", "zero-stats", rest @ ..] => none(Command::CacheZeroStats, rest),
        ["cache", other, ..] => Err(Usage(format!("cache: unknown subcommand {other:?} (stats, clear, zero-stats)"))),
        ["cache"] => Err(Usage("cache: stats, clear or zero-stats?".into())),
        ["distribute", file] => Ok(Command::Distribute(PathBuf::from(file))),
        ["distribute", ..] => Err(Usage("distribute: one DTLTO job list (kdthin distribute JOBS.json)".into())),
        [other, ..] => Err(Usage(format!("unknown command {other:?}"))),
    }
}

/// Runs a command line; returns the exit status.
fn run(args: &[OsString], env: &Env, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let command = match parse(args) {
        Ok(c) => c,
        Err(Usage(msg)) => {
            let _ = writeln!(err, "kdthin: {msg}\nTry 'kdthin help'.");
            return 2;
        }
    };
    match execute(command, env, out) {
        Ok(true) => 0,
        Ok(false) => 1,
        // The reader went away (`kdthin cache stats | head -1`): it has
        // what it wanted, which is no error of ours (ripgrep does the same).
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            let _ = writeln!(err, "kdthin: error: {e:#}");
            1
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
}

/// Ok(false): the command ran but found a problem it has already printed.
fn execute(command: Command, env: &Env, out: &mut dyn Write) -> Result<bool> {
    match command {
        Command::Version => writeln!(out, "kdthin {}", env!("CARGO_PKG_VERSION"))?,
        Command::Help => out.write_all(USAGE.as_bytes())?,
        Command::Config => return config(env, out),
        Command::Report(path) => out.write_all(kdthin::report::summarize(&path)?.as_bytes())?,
        Command::Distribute(path) => {
            // Broken TLS settings stop it before it starts, as they stop kdthin-ld.
            kdthin::remote::preflight(env).map_err(|e| anyhow!(e))?;
            return Ok(kdthin::driver::dtlto::run(env, &path)? == 0);
        }
        Command::CacheStats => {
            let settings = cache_settings(env)?;
            let stats = cache::stats(&settings).context("cannot read the cache")?;
            write!(out, "{stats}")?;
        }
        Command::CacheClear => {
            let settings = cache_settings(env)?;
            cache::clear(&settings).context("cannot clear the cache")?;
            writeln!(out, "cleared {}", display_opt(settings.dir.as_deref()))?;
        }
        Command::CacheZeroStats => {
            let settings = cache_settings(env)?;
            cache::zero_stats(&settings).context("cannot reset the cache counts")?;
            writeln!(out, "cache counts reset")?;
        }
    }
    Ok(true)
}

// ---- cache hook ---------------------------------------------------------
// Everything `kdthin` knows about the cache goes through these few calls
// into `kdthin::cache` (CacheSettings::from_env, stats, clear, zero_stats).

fn cache_settings(env: &Env) -> Result<CacheSettings> {
    let s = CacheSettings::from_env(env);
    if s.dir.is_none() {
        return Err(anyhow!("no cache directory: set KDTHIN_CACHE_DIR or HOME"));
    }
    Ok(s)
}

fn cache_config_lines(env: &Env, out: &mut dyn Write) -> io::Result<()> {
    let s = CacheSettings::from_env(env);
    let size = if s.max_size == 0 { "no size limit".to_string() } else { format!("limit {}", bytes(s.max_size)) };
    let state = if s.enabled { "on" } else { "off (KDTHIN_CACHE)" };
    writeln!(out, "{:<16}{state}, {}, {size}", "cache", display_opt(s.dir.as_deref()))?;
    if let Some(w) = &s.warning {
        writeln!(out, "{:<16}{w}", "")?;
    }
    Ok(())
}
// ---- end of cache hook --------------------------------------------------

/// What kdthin-ld would decide in this environment, one line per setting.
fn config(env: &Env, out: &mut dyn Write) -> Result<bool> {
    let var = |k: &str| env.nonempty(k).and_then(|v| v.to_str()).map(str::to_string);
    writeln!(out, "{:<16}{}", "kdthin-ld", env!("CARGO_PKG_VERSION"))?;

    // kdthin-ld skips itself when looking for ld.lld (it may be installed
    // under that name): look from its point of view, beside us.
    let shim = env.self_exe.with_file_name("kdthin-ld");
    let lookup = LookupEnv::from_env(env);
    let how = match (&lookup.kdthin_ld, &lookup.cc) {
        (Some(ld), _) => format!("KDTHIN_LD={}", ld.to_string_lossy()),
        (None, Some(cc)) => format!("from CC={}", cc.to_string_lossy()),
        (None, None) => "from PATH (CC is unset)".to_string(),
    };
    let found = find_real_ld(&lookup, &shim);
    match &found {
        Ok(ld) => writeln!(out, "{:<16}{}  ({how})", "real ld.lld", ld.display())?,
        Err(e) => writeln!(out, "{:<16}NOT FOUND: {e:#}", "real ld.lld")?,
    }

    let makeflags = var("MAKEFLAGS");
    let Chosen { slots, source, warning, note } = Slots::from_env(makeflags.as_deref(), var("KDTHIN_JOBS").as_deref());
    let jobs = match (source, slots.limit()) {
        (JobsSource::Jobserver { .. }, Some(n)) => format!("{source}, at most {n}"),
        (JobsSource::Jobserver { .. }, None) => format!("{source}, make's -j"),
        _ => source.to_string(),
    };
    writeln!(out, "{:<16}{jobs}", "jobs")?;
    if let Some(w) = warning {
        writeln!(out, "{:<16}{w}", "")?;
    }
    if let Some(note) = note {
        writeln!(out, "{:<16}{note}", "")?;
    }
    drop(slots);

    let s = Settings::from_env(env);
    let yes = |b: bool| if b { "yes" } else { "no" };
    writeln!(out, "{:<16}{}  (KDTHIN_VERBOSE, KBUILD_VERBOSE)", "verbose", yes(s.verbose))?;
    writeln!(out, "{:<16}{}  (KDTHIN_SAVE_TEMPS)", "save temps", yes(s.save_temps))?;
    let fork = match &s.backends.forkserver {
        ForkServerSetting::Off => "off  (KDTHIN_FORKSERVER)".to_string(),
        ForkServerSetting::On(lib) => format!("on, {}", lib.display()),
        ForkServerSetting::NoShim(why) => format!("off: {why}"),
    };
    writeln!(out, "{:<16}{fork}", "fork server")?;
    for w in &s.backends.warnings {
        writeln!(out, "{:<16}{w}", "")?;
    }
    let trace = match var("KDTHIN_TRACE").map(PathBuf::from) {
        None => "off  (KDTHIN_TRACE)".to_string(),
        Some(p) if p.is_dir() => format!("{}/<output>.<pid>.trace.json, one per link", p.display()),
        Some(p) => format!("{}, all links appended", p.display()),
    };
    writeln!(out, "{:<16}{trace}", "trace")?;
    let report =
        var("KDTHIN_REPORT").map_or("off  (KDTHIN_REPORT)".to_string(), |p| format!("{p}, one JSON line per link"));
    writeln!(out, "{:<16}{report}", "report")?;
    cache_config_lines(env, out)?;
    Ok(found.is_ok())
}

fn display_opt(p: Option<&Path>) -> String {
    p.map_or("(no directory)".to_string(), |p| p.display().to_string())
}

fn bytes(n: u64) -> String {
    const G: u64 = 1 << 30;
    const M: u64 = 1 << 20;
    match n {
        n if n >= G => format!("{:.1} GiB", n as f64 / G as f64),
        n => format!("{:.1} MiB", n as f64 / M as f64),
    }
}

fn main() -> ExitCode {
    let env = Env::capture();
    let code = run(&env.args, &env, &mut io::stdout().lock(), &mut io::stderr().lock());
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn run_words(words: &[&str]) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&args(words), &Env::capture(), &mut out, &mut err);
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    /// A reader that has gone away, like `head -1` after its line.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_stdout_is_a_quiet_exit() {
        for words in [&["version"][..], &["help"], &["config"]] {
            let mut err = Vec::new();
            let code = run(&args(words), &Env::capture(), &mut ClosedPipe, &mut err);
            assert_eq!((code, String::from_utf8(err).unwrap()), (0, String::new()), "{words:?}");
        }
        // Other write errors still are errors.
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut err = Vec::new();
        assert_eq!(run(&args(&["version"]), &Env::capture(), &mut Full, &mut err), 1);
        assert!(String::from_utf8(err).unwrap().contains("kdthin: error:"));
    }

    #[test]
    fn parses_every_command() {
        let p = |w: &[&str]| parse(&args(w));
        assert_eq!(p(&["version"]), Ok(Command::Version));
        assert_eq!(p(&["--version"]), Ok(Command::Version));
        assert_eq!(p(&["help"]), Ok(Command::Help));
        assert_eq!(p(&["-h"]), Ok(Command::Help));
        assert_eq!(p(&["config"]), Ok(Command::Config));
        assert_eq!(p(&["report", "r.jsonl"]), Ok(Command::Report("r.jsonl".into())));
        assert_eq!(p(&["cache", "stats"]), Ok(Command::CacheStats));
        assert_eq!(p(&["cache", "clear"]), Ok(Command::CacheClear));
        assert_eq!(p(&["cache", "zero-stats"]), Ok(Command::CacheZeroStats));
    }

    #[test]
    fn usage_errors_exit_2_and_say_what_is_wrong() {
        for (words, says) in [
            (&[][..], "no command given"),
            (&["frobnicate"][..], "unknown command \"frobnicate\""),
            (&["report"][..], "which file?"),
            (&["report", "a", "b"][..], "unexpected argument \"b\""),
            (&["cache"][..], "stats, clear or zero-stats?"),
            (&["cache", "purge"][..], "unknown subcommand \"purge\""),
            (&["version", "now"][..], "unexpected argument \"now\""),
            (&["config", "-v"][..], "unexpected argument \"-v\""),
        ] {
            let (code, out, err) = run_words(words);
            assert_eq!(code, 2, "{words:?}");
            assert_eq!(out, "", "{words:?}");
            assert!(
                err.starts_with("kdthin: ") && err.contains(says) && err.ends_with("Try 'kdthin help'.\n"),
                "{words:?}: {err}"
            );
        }
    }

    #[test]
    fn non_utf8_argument_is_a_usage_error() {
        use std::os::unix::ffi::OsStringExt;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code =
            run(&[OsString::from("report"), OsString::from_vec(vec![0xff])], &Env::capture(), &mut out, &mut err);
        assert_eq!(code, 2);
    }

    #[test]
    fn version_and_help() {
        let (code, out, _) = run_words(&["version"]);
        assert_eq!((code, out), (0, format!("kdthin {}\n", env!("CARGO_PKG_VERSION"))));
        let (code, out, _) = run_words(&["help"]);
        assert_eq!(code, 0);
        assert_eq!(out, USAGE);
    }

    #[test]
    fn report_of_a_missing_file_is_a_runtime_error() {
        let (code, out, err) = run_words(&["report", "/nonexistent/r.jsonl"]);
        assert_eq!((code, out.as_str()), (1, ""));
        assert!(err.starts_with("kdthin: error: /nonexistent/r.jsonl: cannot read"), "{err}");
    }
}

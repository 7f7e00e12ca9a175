//! Every setting a link or `kdthin distribute` reads, built once from the
//! captured [`Env`] and passed down. Parsing and validation happen here;
//! the stages below take typed values and never look at the environment.

use std::path::PathBuf;

use crate::cache::CacheSettings;
use crate::driver::whole_link::LinkCacheSettings;
use crate::env::{Env, ToolEnv};
use crate::exec::forkserver::ForkServerSetting;
use crate::exec::slots::{Chosen, Slots};
use crate::remote::RemoteSettings;
use crate::report::savedir::SaveSettings;
use crate::report::ReportSettings;
use crate::switch;

#[derive(Clone, Debug)]
pub struct Settings {
    /// `KDTHIN_VERBOSE`, or kbuild's `V=1`.
    pub verbose: bool,
    /// `KDTHIN_SAVE_TEMPS`: keep the work directory.
    pub save_temps: bool,
    /// `make -s`.
    pub silent: bool,
    /// Values that were neither on nor off, for a distributed link to
    /// print (a passthrough link stays silent).
    pub warnings: Vec<String>,
    pub report: ReportSettings,
    pub cache: CacheSettings,
    /// The whole-link cache (the backend cache is `cache`).
    pub link_cache: LinkCacheSettings,
    pub backends: BackendSettings,
    pub save: SaveSettings,
    /// `KDTHIN_TMPDIR`: where index directories go, made if missing.
    pub tmpdir: Option<PathBuf>,
    /// `XDG_RUNTIME_DIR`: a tmpfs to try for them otherwise.
    pub runtime_dir: Option<PathBuf>,
}

/// Where and how backends run.
#[derive(Clone, Debug, Default)]
pub struct BackendSettings {
    /// `MAKEFLAGS` (make's jobserver) and `KDTHIN_JOBS`.
    pub makeflags: Option<String>,
    pub jobs: Option<String>,
    /// `KDTHIN_REMOTE*`: None when off, Err when unusable.
    pub remote: Option<Result<RemoteSettings, String>>,
    /// PATH and `CCC_OVERRIDE_OPTIONS`, for the compilers.
    pub tools: ToolEnv,
    /// `KDTHIN_FORKSERVER`, and the shim it needs.
    pub forkserver: ForkServerSetting,
    /// `KDTHIN_VERBOSE` or `V=1` (as [`Settings::verbose`]): the local
    /// executor says why a compiler is not forked.
    pub verbose: bool,
    /// Values that were neither on nor off, printed when the backends are
    /// set up.
    pub warnings: Vec<String>,
}

impl BackendSettings {
    pub fn from_env(env: &Env) -> BackendSettings {
        let mut warnings = vec![];
        let forkserver = ForkServerSetting::from_env(env, &mut warnings);
        BackendSettings {
            makeflags: env.str("MAKEFLAGS").map(str::to_string),
            jobs: env.str("KDTHIN_JOBS").map(str::to_string),
            remote: RemoteSettings::from_env(env),
            tools: ToolEnv::from_env(env),
            forkserver,
            verbose: verbose(env, &mut vec![]),
            warnings,
        }
    }

    /// The local CPU budget (make's jobserver, `KDTHIN_JOBS`, the CPUs).
    /// Each call makes new slots (a jobserver client is not shared).
    pub fn slots(&self) -> Chosen {
        Slots::from_env(self.makeflags.as_deref(), self.jobs.as_deref())
    }
}

impl Settings {
    pub fn from_env(env: &Env) -> Settings {
        let mut warnings = vec![];
        let var = |k: &str| env.var_os(k);
        let verbose = verbose(env, &mut warnings);
        let silent = make_is_silent(env.str("MAKEFLAGS"));
        Settings {
            verbose,
            save_temps: switch::get("KDTHIN_SAVE_TEMPS", false, var, &mut warnings),
            silent,
            report: ReportSettings::from_env(env, silent, verbose),
            cache: CacheSettings::from_env(env),
            link_cache: LinkCacheSettings::from_env(env, &mut warnings),
            backends: BackendSettings::from_env(env),
            save: SaveSettings::from_env(env),
            tmpdir: env.nonempty("KDTHIN_TMPDIR").map(PathBuf::from),
            runtime_dir: env.nonempty("XDG_RUNTIME_DIR").map(PathBuf::from),
            warnings,
        }
    }
}

/// `KDTHIN_VERBOSE`, or kbuild's `V=1`.
fn verbose(env: &Env, warnings: &mut Vec<String>) -> bool {
    let kbuild_verbose = env.str("KBUILD_VERBOSE").is_some_and(|v| v.contains('1'));
    switch::get("KDTHIN_VERBOSE", false, |k| env.var_os(k), warnings) || kbuild_verbose
}

/// `make -s` puts `s` in the first word of MAKEFLAGS (single-letter flags).
pub fn make_is_silent(makeflags: Option<&str>) -> bool {
    let Some(first) = makeflags.and_then(|f| f.split_whitespace().next()) else { return false };
    !first.starts_with("--") && first.trim_start_matches('-').contains('s')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_from_the_snapshot_alone() {
        let env = Env::from_vars([
            ("KDTHIN_VERBOSE", "1"),
            ("MAKEFLAGS", "s -j2"),
            ("KDTHIN_TMPDIR", "/x/tmp"),
            ("KDTHIN_LINK_CACHE", "maybe"),
            ("KDTHIN_JOBS", "3"),
            ("PATH", "/opt/llvm/bin"),
            ("CC", "clang-22"),
        ]);
        let s = Settings::from_env(&env);
        assert!(s.verbose && s.silent && !s.save_temps);
        assert_eq!(s.tmpdir, Some(PathBuf::from("/x/tmp")));
        assert!(s.link_cache.on, "an unknown value keeps the default");
        assert!(s.warnings.iter().any(|w| w.contains("KDTHIN_LINK_CACHE")), "{:?}", s.warnings);
        assert_eq!(s.backends.jobs.as_deref(), Some("3"));
        assert_eq!(s.backends.tools.path, Some("/opt/llvm/bin".into()));
        assert!(s.backends.remote.is_none());
        assert_eq!(s.save.cc, "clang-22");
        assert!(s.save.env.iter().any(|(k, _)| k == "CC"));
        let quiet = Settings::from_env(&Env::from_vars([("KBUILD_VERBOSE", "0")]));
        assert!(!quiet.verbose && !quiet.silent && quiet.link_cache.on);
    }

    #[test]
    fn make_s_is_silent() {
        assert!(make_is_silent(Some("s -j2 --jobserver-auth=3,4")));
        assert!(make_is_silent(Some("rs")));
        assert!(!make_is_silent(Some(" --jobserver-auth=3,4")));
        assert!(!make_is_silent(None));
    }
}

//! The process's environment, read once.
//!
//! [`Env::capture`] is the one place that reads environment variables, the
//! command line and the parent process (`/proc/<ppid>/cmdline`, for a
//! single-object module's recipe). Everything below the entry points gets
//! an [`Env`] or settings built from it, so that what a link does is a
//! function of values a test can write down (ripgrep's split: parse and
//! validate first, touch the environment in one place).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: BTreeMap<OsString, OsString>,
    /// The arguments, without `argv[0]`.
    pub args: Vec<OsString>,
    /// This executable (for the linker lookup, which must never find us).
    pub self_exe: PathBuf,
    /// The working directory, if it can be read.
    pub cwd: Option<PathBuf>,
    /// The process that ran us: its pid and `/proc/<pid>/cmdline`.
    pub parent: Parent,
}

#[derive(Clone, Debug, Default)]
pub struct Parent {
    pub pid: i32,
    /// NUL-separated arguments, or why they could not be read: read on
    /// first use, since only a link that distributes single-object
    /// modules needs them, and every passthrough link starts here.
    cmdline: std::sync::OnceLock<Result<Vec<u8>, String>>,
}

impl Parent {
    /// A parent whose command line is already known (tests).
    pub fn known(pid: i32, cmdline: Result<Vec<u8>, String>) -> Parent {
        Parent { pid, cmdline: std::sync::OnceLock::from(cmdline) }
    }

    /// `/proc/<pid>/cmdline`, read once.
    pub fn cmdline(&self) -> &Result<Vec<u8>, String> {
        self.cmdline.get_or_init(|| {
            let pid = self.pid;
            std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| format!("/proc/{pid}/cmdline: {e}"))
        })
    }
}

impl Env {
    /// Reads the process environment. Call once, at start.
    pub fn capture() -> Env {
        // SAFETY: getppid has no preconditions and cannot fail.
        let pid = unsafe { libc::getppid() };
        Env {
            vars: std::env::vars_os().collect(),
            args: std::env::args_os().skip(1).collect(),
            self_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
            cwd: std::env::current_dir().ok(),
            parent: Parent { pid, ..Parent::default() },
        }
    }

    /// An environment of just these variables (tests, and tools that
    /// build settings from a list).
    pub fn from_vars<K: Into<OsString>, V: Into<OsString>>(vars: impl IntoIterator<Item = (K, V)>) -> Env {
        Env { vars: vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect(), ..Env::default() }
    }

    pub fn var(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(OsStr::new(name)).map(OsString::as_os_str)
    }

    /// A copy, for the settings parsers that take `Fn(&str) -> Option<OsString>`.
    pub fn var_os(&self, name: &str) -> Option<OsString> {
        self.var(name).map(OsStr::to_os_string)
    }

    /// Set and not empty.
    pub fn nonempty(&self, name: &str) -> Option<&OsStr> {
        self.var(name).filter(|v| !v.is_empty())
    }

    /// Set and valid UTF-8.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.var(name).and_then(OsStr::to_str)
    }

    /// Every variable, sorted by name.
    pub fn vars(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.vars.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str()))
    }

    /// The same, with `name` set: for values this process sets for its
    /// children (and so also for itself).
    pub fn set(&mut self, name: &str, value: OsString) {
        self.vars.insert(name.into(), value);
    }
}

/// What finding a compiler and telling compilers apart depend on: the
/// PATH it is looked up in and `CCC_OVERRIDE_OPTIONS`, which edits every
/// clang command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolEnv {
    pub path: Option<OsString>,
    pub ccc_override: Option<OsString>,
}

impl ToolEnv {
    pub fn from_env(env: &Env) -> ToolEnv {
        ToolEnv { path: env.var_os("PATH"), ccc_override: env.var_os("CCC_OVERRIDE_OPTIONS") }
    }

    /// `program` as PATH finds it; a name with a slash as it is.
    pub fn resolve(&self, program: &OsStr) -> Option<PathBuf> {
        let p = std::path::Path::new(program);
        if program.as_encoded_bytes().contains(&b'/') {
            return Some(p.to_path_buf());
        }
        std::env::split_paths(self.path.as_deref()?)
            .map(|d| d.join(p))
            .find(|c| std::fs::metadata(c).is_ok_and(|m| m.is_file()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let env = Env::from_vars([("A", "1"), ("EMPTY", "")]);
        assert_eq!(env.var("A"), Some(OsStr::new("1")));
        assert_eq!(env.str("A"), Some("1"));
        assert_eq!(env.var("EMPTY"), Some(OsStr::new("")));
        assert_eq!(env.nonempty("EMPTY"), None);
        assert_eq!(env.var("B"), None);
    }

    #[test]
    fn resolves_in_its_own_path_not_the_process_one() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("kdthin-test-tool"), "").unwrap();
        let tools = ToolEnv { path: Some(d.path().into()), ccc_override: None };
        assert_eq!(tools.resolve("kdthin-test-tool".as_ref()), Some(d.path().join("kdthin-test-tool")));
        assert_eq!(ToolEnv::default().resolve("kdthin-test-tool".as_ref()), None);
        assert_eq!(tools.resolve("./x".as_ref()), Some(PathBuf::from("./x")));
    }
}

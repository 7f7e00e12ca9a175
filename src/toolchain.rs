//! Finding the real ld.lld.
//!
//! Order: `KDTHIN_LD`; the ld.lld that belongs to the compiler kbuild
//! exports in `$CC` (`clang-22` -> `ld.lld-22`, `/opt/llvm/bin/clang` ->
//! `/opt/llvm/bin/ld.lld`); `ld.lld` on PATH. We may be installed under the
//! name `ld.lld` ourselves, so a candidate that is this very executable is
//! skipped: exec'ing ourselves would loop forever.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The environment variables that decide the lookup (a snapshot, so the
/// decision is a pure function of it and the file system).
#[derive(Clone, Debug, Default)]
pub struct LookupEnv {
    pub kdthin_ld: Option<OsString>,
    pub cc: Option<OsString>,
    pub path: Option<OsString>,
}

impl LookupEnv {
    pub fn from_process() -> Self {
        LookupEnv {
            kdthin_ld: std::env::var_os("KDTHIN_LD").filter(|v| !v.is_empty()),
            cc: std::env::var_os("CC").filter(|v| !v.is_empty()),
            path: std::env::var_os("PATH"),
        }
    }
}

/// A candidate: an explicit path, or a name to look up on PATH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Candidate {
    Path(PathBuf),
    OnPath(OsString),
}

/// The compiler word of `$CC`: kbuild may prefix a wrapper (`ccache clang`).
fn clang_word(cc: &OsStr) -> Option<&str> {
    cc.to_str()?
        .split_whitespace()
        .find(|w| Path::new(w).file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("clang")))
}

/// Candidates in the order they are tried (after `KDTHIN_LD`, which is
/// taken as given).
pub fn candidates(env: &LookupEnv) -> Vec<Candidate> {
    let mut out = Vec::new();
    if let Some(word) = env.cc.as_deref().and_then(clang_word) {
        let p = Path::new(word);
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("clang");
        // clang-22 -> ld.lld-22; clang -> ld.lld
        let suffix = name.strip_prefix("clang").unwrap_or("");
        let suffix =
            if suffix.starts_with('-') && suffix[1..].chars().all(|c| c.is_ascii_digit()) { suffix } else { "" };
        let ld = format!("ld.lld{suffix}");
        match p.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => out.push(Candidate::Path(dir.join(&ld))),
            None => out.push(Candidate::OnPath(ld.clone().into())),
        }
        if !suffix.is_empty() {
            out.push(Candidate::OnPath(ld.into()));
        }
    }
    out.push(Candidate::OnPath("ld.lld".into()));
    out.dedup();
    out
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Resolve the real linker. `self_exe` is this program (/proc/self/exe).
pub fn find_real_ld(env: &LookupEnv, self_exe: &Path) -> Result<PathBuf> {
    if let Some(explicit) = &env.kdthin_ld {
        let p = PathBuf::from(explicit);
        let resolved = if p.components().count() > 1 { Some(p.clone()) } else { search_path(env, explicit, self_exe) };
        match resolved {
            Some(r) if is_executable(&r) && !same_file(&r, self_exe) => return Ok(r),
            Some(r) if same_file(&r, self_exe) => {
                bail!("KDTHIN_LD={} is kdthin-ld itself; point it at the real ld.lld", p.display())
            }
            _ => bail!("KDTHIN_LD={}: not an executable file", p.display()),
        }
    }
    for c in candidates(env) {
        let found = match &c {
            Candidate::Path(p) => Some(p.clone()).filter(|p| is_executable(p) && !same_file(p, self_exe)),
            Candidate::OnPath(name) => search_path(env, name, self_exe),
        };
        if let Some(f) = found {
            return Ok(f);
        }
    }
    let tried: Vec<String> = candidates(env)
        .iter()
        .map(|c| match c {
            Candidate::Path(p) => p.display().to_string(),
            Candidate::OnPath(n) => n.to_string_lossy().into_owned(),
        })
        .collect();
    bail!("cannot find the real ld.lld (tried {}); set KDTHIN_LD=/path/to/ld.lld", tried.join(", "))
}

/// First executable `name` on PATH that is not ourselves.
fn search_path(env: &LookupEnv, name: &OsStr, self_exe: &Path) -> Option<PathBuf> {
    let path = env.path.as_deref()?;
    std::env::split_paths(path).map(|d| d.join(name)).find(|p| is_executable(p) && !same_file(p, self_exe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn env(cc: &str) -> LookupEnv {
        LookupEnv { cc: Some(cc.into()), ..Default::default() }
    }

    #[test]
    fn candidates_follow_the_compiler() {
        assert_eq!(
            candidates(&env("clang-22")),
            vec![Candidate::OnPath("ld.lld-22".into()), Candidate::OnPath("ld.lld".into())]
        );
        assert_eq!(
            candidates(&env("/opt/llvm/bin/clang")),
            vec![Candidate::Path("/opt/llvm/bin/ld.lld".into()), Candidate::OnPath("ld.lld".into())]
        );
        assert_eq!(
            candidates(&env("ccache /usr/lib/llvm-19/bin/clang-19")),
            vec![
                Candidate::Path("/usr/lib/llvm-19/bin/ld.lld-19".into()),
                Candidate::OnPath("ld.lld-19".into()),
                Candidate::OnPath("ld.lld".into())
            ]
        );
        assert_eq!(candidates(&env("gcc")), vec![Candidate::OnPath("ld.lld".into())]);
        assert_eq!(candidates(&LookupEnv::default()), vec![Candidate::OnPath("ld.lld".into())]);
    }

    fn exe(p: &Path) {
        std::fs::write(p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn never_resolves_to_itself() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        // We are installed as a/ld.lld; the real one is b/ld.lld.
        exe(&a.join("ld.lld"));
        exe(&b.join("ld.lld"));
        let path = std::env::join_paths([&a, &b]).unwrap();
        let e = LookupEnv { path: Some(path), ..Default::default() };
        assert_eq!(find_real_ld(&e, &a.join("ld.lld")).unwrap(), b.join("ld.lld"));
        // KDTHIN_LD pointing at ourselves is an error, not a loop.
        let e2 = LookupEnv { kdthin_ld: Some(a.join("ld.lld").into()), ..e.clone() };
        let err = find_real_ld(&e2, &a.join("ld.lld")).unwrap_err().to_string();
        assert!(err.contains("kdthin-ld itself"), "{err}");
        // Nothing but ourselves: a clear error that says what was tried.
        let e3 = LookupEnv { path: Some(a.clone().into()), ..Default::default() };
        let err = find_real_ld(&e3, &a.join("ld.lld")).unwrap_err().to_string();
        assert!(err.contains("cannot find the real ld.lld") && err.contains("KDTHIN_LD"), "{err}");
    }

    #[test]
    fn compiler_directory_wins_over_path() {
        let d = tempfile::tempdir().unwrap();
        exe(&d.path().join("ld.lld"));
        let cc = d.path().join("clang");
        let e = LookupEnv { cc: Some(cc.into()), path: Some("/nonexistent".into()), ..Default::default() };
        assert_eq!(find_real_ld(&e, Path::new("/proc/self/exe")).unwrap(), d.path().join("ld.lld"));
    }
}

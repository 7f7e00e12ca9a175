//! Finding the real ld.lld.
//!
//! Order: `KDTHIN_LD`; the ld.lld that belongs to the compiler kbuild
//! exports in `$CC` (`clang-22` -> `ld.lld-22`, `/opt/llvm/bin/clang` ->
//! `/opt/llvm/bin/ld.lld`); `ld.lld` on PATH. We may be installed under the
//! name `ld.lld` ourselves, so a candidate that is this very executable is
//! skipped: exec'ing ourselves would loop forever.
//!
//! "This very executable" is judged by identity (same file) and by content
//! (a copy of it), so two copies installed as `ld.lld` in two PATH
//! directories do not exec each other. Copies that differ (two versions)
//! are caught by [`CHAIN_VAR`]: every kdthin-ld puts itself in it for its
//! children, and one that finds itself run by another as its real linker
//! skips all of them, so no chain of kdthin-ld executables can loop.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The kdthin-ld executables above this process, each run by the one before
/// as its real ld.lld (a PATH list). Set for every child of kdthin-ld.
pub const CHAIN_VAR: &str = "KDTHIN_LD_CHAIN";

/// The environment variables that decide the lookup (a snapshot, so the
/// decision is a pure function of it and the file system).
#[derive(Clone, Debug, Default)]
pub struct LookupEnv {
    pub kdthin_ld: Option<OsString>,
    pub cc: Option<OsString>,
    pub path: Option<OsString>,
    /// [`CHAIN_VAR`]: kdthin-ld executables never to resolve to.
    pub chain: Vec<PathBuf>,
}

impl LookupEnv {
    pub fn from_env(env: &crate::env::Env) -> Self {
        LookupEnv {
            kdthin_ld: env.nonempty("KDTHIN_LD").map(|v| v.to_os_string()),
            cc: env.nonempty("CC").map(|v| v.to_os_string()),
            path: env.var_os("PATH"),
            chain: env.var(CHAIN_VAR).map(|c| std::env::split_paths(c).collect()).unwrap_or_default(),
        }
    }

    /// The value of [`CHAIN_VAR`] for our children: the chain plus us.
    pub fn chain_with(&self, self_exe: &Path) -> OsString {
        let all = self.chain.iter().map(PathBuf::as_path).chain([self_exe]);
        std::env::join_paths(all).unwrap_or_else(|_| self_exe.as_os_str().to_os_string())
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

/// A copy of `b`: same size, then same bytes (only copies get that far,
/// so the real ld.lld costs one stat).
fn same_content(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) if x.len() == y.len() => {}
        _ => return false,
    }
    matches!((std::fs::read(a), std::fs::read(b)), (Ok(x), Ok(y)) if x == y)
}

/// Whether `p` is kdthin-ld: ourselves (the file or a copy), or one of the
/// kdthin-ld executables that ran us as their real linker.
fn is_kdthin(env: &LookupEnv, p: &Path, self_exe: &Path) -> bool {
    same_file(p, self_exe) || env.chain.iter().any(|c| same_file(p, c)) || same_content(p, self_exe)
}

fn usable(env: &LookupEnv, p: &Path, self_exe: &Path) -> bool {
    is_executable(p) && !is_kdthin(env, p, self_exe)
}

/// Resolve the real linker. `self_exe` is this program (/proc/self/exe).
pub fn find_real_ld(env: &LookupEnv, self_exe: &Path) -> Result<PathBuf> {
    if let Some(explicit) = &env.kdthin_ld {
        let p = PathBuf::from(explicit);
        let resolved = if p.components().count() > 1 { Some(p.clone()) } else { search_path(env, explicit, self_exe) };
        match resolved {
            Some(r) if usable(env, &r, self_exe) => return Ok(r),
            Some(r) if is_kdthin(env, &r, self_exe) => {
                bail!("KDTHIN_LD={} is kdthin-ld itself; point it at the real ld.lld", p.display())
            }
            _ => bail!("KDTHIN_LD={}: not an executable file", p.display()),
        }
    }
    for c in candidates(env) {
        let found = match &c {
            Candidate::Path(p) => Some(p.clone()).filter(|p| usable(env, p, self_exe)),
            Candidate::OnPath(name) => search_path(env, name, self_exe),
        };
        if let Some(f) = found {
            return Ok(f);
        }
    }
    // Run by hand with only versioned LLVM packages installed (`ld.lld-22`,
    // no `ld.lld`, no CC naming a version): one version on PATH is the
    // answer; several are listed, as choosing one would be a guess.
    let versioned = versioned_on_path(env, self_exe);
    if let [only] = versioned.as_slice() {
        return Ok(only.clone());
    }
    if !versioned.is_empty() {
        let all: Vec<String> = versioned.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "cannot choose the real ld.lld: no ld.lld, and several versions on PATH ({}); \
             set KDTHIN_LD=/path/to/ld.lld (or CC=clang-N)",
            all.join(", ")
        );
    }
    let tried: Vec<String> = candidates(env)
        .iter()
        .map(|c| match c {
            Candidate::Path(p) => p.display().to_string(),
            Candidate::OnPath(n) => n.to_string_lossy().into_owned(),
        })
        .collect();
    let skipped = if env.chain.is_empty() {
        String::new()
    } else {
        // Run as the real linker of another kdthin-ld: say so, or two
        // kdthin-ld installed as ld.lld look like a missing ld.lld.
        let all: Vec<String> = env.chain.iter().map(|p| p.display().to_string()).collect();
        format!(
            "; {} was run as ld.lld by kdthin-ld {}, and neither is the real one",
            self_exe.display(),
            all.join(" -> ")
        )
    };
    bail!("cannot find the real ld.lld (tried {}{skipped}); set KDTHIN_LD=/path/to/ld.lld", tried.join(", "))
}

/// Every `ld.lld-<version>` on PATH that is not ourselves, the first of
/// each name, in PATH order.
fn versioned_on_path(env: &LookupEnv, self_exe: &Path) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    let mut found = Vec::new();
    for dir in env.path.as_deref().map(std::env::split_paths).into_iter().flatten() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut names: Vec<_> = entries
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| {
                n.to_str()
                    .and_then(|n| n.strip_prefix("ld.lld-"))
                    .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        names.sort();
        for n in names {
            let p = dir.join(&n);
            if !seen.contains(&n) && usable(env, &p, self_exe) {
                seen.insert(n);
                found.push(p);
            }
        }
    }
    found
}

/// First executable `name` on PATH that is not ourselves.
fn search_path(env: &LookupEnv, name: &OsStr, self_exe: &Path) -> Option<PathBuf> {
    let path = env.path.as_deref()?;
    std::env::split_paths(path).map(|d| d.join(name)).find(|p| usable(env, p, self_exe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn env(cc: &str) -> LookupEnv {
        LookupEnv { cc: Some(cc.into()), ..Default::default() }
    }

    #[test]
    fn only_versioned_linkers_on_path() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        exe(&a.join("ld.lld-22"));
        exe(&a.join("ld.lld-x")); // not a version
        let me = d.path().join("kdthin-ld");
        std::fs::write(&me, "us").unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        let env = LookupEnv { path: Some(path.clone()), ..Default::default() };
        // One version: unambiguous.
        assert_eq!(find_real_ld(&env, &me).unwrap(), a.join("ld.lld-22"));
        // The same version again later on PATH: still one.
        exe(&b.join("ld.lld-22"));
        assert_eq!(find_real_ld(&env, &me).unwrap(), a.join("ld.lld-22"));
        // Two versions: an error naming both.
        exe(&b.join("ld.lld-19"));
        let e = find_real_ld(&env, &me).unwrap_err().to_string();
        assert!(e.contains("ld.lld-22") && e.contains("ld.lld-19") && e.contains("KDTHIN_LD"), "{e}");
        // A plain ld.lld still wins.
        exe(&b.join("ld.lld"));
        assert_eq!(find_real_ld(&env, &me).unwrap(), b.join("ld.lld"));
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
        // We are installed as a/ld.lld; the real one is b/ld.lld (other
        // bytes: same bytes would make it a copy of us).
        exe(&a.join("ld.lld"));
        exe(&b.join("ld.lld"));
        std::fs::write(b.join("ld.lld"), "#!/bin/sh\n# the real one\n").unwrap();
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
    fn copies_of_itself_and_the_chain_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = ["a", "b", "c", "real"].iter().map(|n| d.path().join(n)).collect();
        for dir in &dirs {
            std::fs::create_dir_all(dir).unwrap();
        }
        // a/ld.lld is us; b/ld.lld a copy of us; c/ld.lld another
        // kdthin-ld (another version) that ran us; real/ld.lld the linker.
        std::fs::write(dirs[0].join("ld.lld"), "#!/bin/sh\n# kdthin-ld v1\n").unwrap();
        std::fs::copy(dirs[0].join("ld.lld"), dirs[1].join("ld.lld")).unwrap();
        std::fs::write(dirs[2].join("ld.lld"), "#!/bin/sh\n# kdthin-ld v2, longer\n").unwrap();
        exe(&dirs[3].join("ld.lld"));
        for dir in &dirs[..3] {
            std::fs::set_permissions(dir.join("ld.lld"), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let me = dirs[0].join("ld.lld");
        let path = std::env::join_paths(&dirs).unwrap();
        // A copy is not the real linker; the different one is, to us alone.
        let e = LookupEnv { path: Some(path.clone()), ..Default::default() };
        assert_eq!(find_real_ld(&e, &me).unwrap(), dirs[2].join("ld.lld"));
        // Run by c/ld.lld as its real linker: c is skipped too.
        let e = LookupEnv { chain: vec![dirs[2].join("ld.lld")], ..e };
        assert_eq!(find_real_ld(&e, &me).unwrap(), dirs[3].join("ld.lld"));
        assert_eq!(e.chain_with(&me), std::env::join_paths([dirs[2].join("ld.lld"), me.clone()]).unwrap());
        // No real linker at all: a clear error naming the chain.
        let e = LookupEnv { path: Some(std::env::join_paths(&dirs[..3]).unwrap()), ..e };
        let err = find_real_ld(&e, &me).unwrap_err().to_string();
        assert!(err.contains("cannot find the real ld.lld") && err.contains(&*dirs[2].to_string_lossy()), "{err}");
        // KDTHIN_LD naming a copy of us is "itself" too.
        let e = LookupEnv { kdthin_ld: Some(dirs[1].join("ld.lld").into()), ..e };
        assert!(find_real_ld(&e, &me).unwrap_err().to_string().contains("kdthin-ld itself"));
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

//! "This endpoint is down", shared by the links of one build.
//!
//! Every link is its own process, so a dead endpoint would otherwise cost
//! each of them the same timeout (a kernel build has hundreds of module
//! links). The link that finds the service down writes a small file named
//! after the endpoint; later links read it before trying and run their
//! backends locally while it is fresh ([`FRESH`]).
//!
//! The file lives in `$XDG_RUNTIME_DIR/kdthin/` (per user, mode 0700,
//! gone at logout), else in the cache directory (`KDTHIN_CACHE_DIR`, else
//! `${XDG_CACHE_HOME:-$HOME/.cache}/kdthin`): never in a shared directory,
//! where another user could plant a verdict. It is written through a
//! temporary and renamed, so a reader sees a whole verdict or none.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::exec::signals;

/// How long a verdict stands. Long enough to cover the burst of links of
/// one build step (make runs module links back to back), short enough
/// that a server back up is used again within a minute; each minute costs
/// at most one connection timeout.
pub const FRESH: Duration = Duration::from_secs(60);

/// The verdict file of one endpoint (None: nowhere to keep it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdicts {
    path: Option<PathBuf>,
    url: String,
}

/// A verdict found fresh.
#[derive(Debug, PartialEq, Eq)]
pub struct Down {
    pub age: Duration,
    pub why: String,
}

impl Verdicts {
    /// `dir`: from [`state_dir`]; `url`: the endpoint as the user wrote it.
    pub fn new(dir: Option<&Path>, url: &str) -> Verdicts {
        let hash = Sha256::digest(url.as_bytes());
        let name: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        Verdicts { path: dir.map(|d| d.join(format!("remote-down.{name}"))), url: url.to_string() }
    }

    /// A fresh "down" verdict for this endpoint, if another link (or an
    /// earlier one) left one.
    pub fn down(&self) -> Option<Down> {
        let text = std::fs::read_to_string(self.path.as_ref()?).ok()?;
        let mut lines = text.lines();
        let secs: u64 = lines.next()?.parse().ok()?;
        // The hash names the file; the URL inside guards against a collision.
        if lines.next()? != self.url {
            return None;
        }
        let why = lines.next().unwrap_or("").to_string();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        // A time in the future (clock stepped back, garbage) is no verdict.
        let age = now.checked_sub(Duration::from_secs(secs))?;
        (age < FRESH).then_some(Down { age, why })
    }

    /// Says the endpoint is down now, for `why`. Best effort: a verdict
    /// that cannot be written only costs later links their own timeout.
    pub fn record(&self, why: &str) {
        let Some(path) = &self.path else { return };
        let _ = write(path, &self.url, why);
    }
}

fn write(path: &Path, url: &str, why: &str) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(format!(".tmp.{}.{:x}", std::process::id(), now.as_nanos()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f =
            signals::create_registered(&tmp, |p| std::fs::OpenOptions::new().write(true).create_new(true).open(p))?;
        let why = why.replace('\n', " ");
        f.write_all(format!("{}\n{url}\n{why}\n", now.as_secs()).as_bytes())?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    signals::unregister_cleanup(&tmp);
    result
}

/// Where verdicts are kept, from the environment `get` reads (see the
/// module docs). None when neither place is known.
pub fn state_dir(get: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let abs = |v: String| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(run) = get("XDG_RUNTIME_DIR").and_then(abs).filter(|d| d.is_dir()) {
        return Some(run.join("kdthin"));
    }
    get("KDTHIN_CACHE_DIR")
        .and_then(abs)
        .or_else(|| get("XDG_CACHE_HOME").and_then(abs).map(|p| p.join("kdthin")))
        .or_else(|| get("HOME").and_then(abs).map(|p| p.join(".cache/kdthin")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_is_seen_by_the_next_link_and_expires() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("kdthin");
        let a = Verdicts::new(Some(&dir), "grpc://127.0.0.1:1");
        assert_eq!(a.down(), None);
        a.record("no answer in 5s\n(second line)");
        // Another link, same endpoint: sees it. Another endpoint: does not.
        let again = Verdicts::new(Some(&dir), "grpc://127.0.0.1:1");
        let down = again.down().expect("a fresh verdict");
        assert_eq!(down.why, "no answer in 5s (second line)");
        assert!(down.age < Duration::from_secs(5), "{down:?}");
        assert_eq!(Verdicts::new(Some(&dir), "grpc://127.0.0.1:2").down(), None);
        // Private directory, no temporaries left.
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");

        // Old, future, and garbled verdicts do not count.
        let path = again.path.clone().unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        for secs in [now - FRESH.as_secs() - 1, now + 3600] {
            std::fs::write(&path, format!("{secs}\ngrpc://127.0.0.1:1\nx\n")).unwrap();
            assert_eq!(again.down(), None, "{secs} (now {now})");
        }
        std::fs::write(&path, "soon\ngrpc://127.0.0.1:1\n").unwrap();
        assert_eq!(again.down(), None);
        // Nowhere to keep verdicts: never down, recording is a no-op.
        let none = Verdicts::new(None, "grpc://127.0.0.1:1");
        none.record("x");
        assert_eq!(none.down(), None);
    }

    #[test]
    fn state_dir_prefers_the_runtime_dir() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().to_str().unwrap().to_string();
        let env = |pairs: &'static [(&'static str, &'static str)], run: Option<String>| {
            move |k: &str| {
                if k == "XDG_RUNTIME_DIR" {
                    return run.clone();
                }
                pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(state_dir(&env(&[("HOME", "/h")], Some(run.clone()))), Some(d.path().join("kdthin")));
        // Missing or relative runtime dir: the cache's place.
        assert_eq!(
            state_dir(&env(&[("HOME", "/h")], Some("/nonexistent-kdthin".into()))),
            Some("/h/.cache/kdthin".into())
        );
        assert_eq!(state_dir(&env(&[("HOME", "/h")], Some("rel".into()))), Some("/h/.cache/kdthin".into()));
        const CACHE: &[(&str, &str)] = &[("KDTHIN_CACHE_DIR", "/c"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(state_dir(&env(&CACHE[..1], None)), Some("/c".into()));
        assert_eq!(state_dir(&env(&CACHE[1..], None)), Some("/x/kdthin".into()));
        assert_eq!(state_dir(&env(&[], None)), None);
    }
}

//! A link's private temporary directories: the work directory beside the
//! output and the index directory, often in a tmpfs every user can write
//! (`/dev/shm`).
//!
//! A name another user can guess is a name they can plant first: a
//! directory of theirs (world-writable, with a symlink inside) would
//! receive our index files, and the backends would read whatever they put
//! there. So each directory gets an unpredictable name and is created
//! fresh with mode 0700 (mkdtemp-style), never reused when it exists.
//!
//! The name is chosen before the directory is created because planning is
//! pure: it spells out every path of the link from the chosen names, and
//! only the execute stage creates them. An existing directory at the
//! chosen name is an error, never a directory to use.
//!
//! A link that dies without cleaning up (SIGKILL, power loss) leaves its
//! index directory in the shared tmpfs and its work directory beside the
//! output. Each link holds an exclusive flock on both for its lifetime,
//! taken before the directory gets its name (it is made under a staging
//! name, locked, then renamed): so a directory with its final name that
//! nobody holds locked belongs to a dead link, and the next link removes
//! it at once, unless it was kept on purpose (`KDTHIN_SAVE_TEMPS`, a
//! failed backend's index files): those carry a [`KEPT`] file. Staging
//! directories, and names from older kdthin-ld versions that did not lock,
//! are only removed once they are a minute old.

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The prefix of index directories in a shared temporary directory.
pub const INDEX_PREFIX: &str = "kdthin.";

/// Present in a directory that a link kept for the user to look at.
pub const KEPT: &str = ".kdthin-kept";

/// How old an unlocked directory that may not be locked yet (a staging
/// name, an older version's name) must be before another link removes it.
const STALE_AFTER: Duration = Duration::from_secs(60);

/// Appended to a directory's name until it is locked, with `-<pid>` of the
/// process that makes it (older versions wrote `.new` alone).
const STAGING: &str = ".new";

/// The length of [`unique_suffix`]: a name ending in one was locked before
/// it got that name.
const SUFFIX_LEN: usize = 12;

/// Twelve characters from [a-z0-9] (62 bits) from the kernel's random
/// source: the part of a name nobody can predict.
pub fn unique_suffix() -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; SUFFIX_LEN];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: writes at most the remaining length into our own buffer.
        let n = unsafe { libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            // No getrandom (very old kernel): the clock and pid are not
            // secret, but the directory is still created exclusively.
            let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
            let mix = t ^ ((std::process::id() as u128) << 64);
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = (mix >> (i * 8)) as u8;
            }
            break;
        }
    }
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// Creates `dir` (not its parents) with mode 0700. Fails if anything,
/// a symlink included, is already there.
pub fn create(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    // The umask may have taken bits away; 0700 is what we want, exactly.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Opens a directory we own for locking, never through a symlink.
fn open_dir(dir: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(dir)
}

fn flock(f: &File, blocking: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let op = if blocking { libc::LOCK_EX } else { libc::LOCK_EX | libc::LOCK_NB };
    // SAFETY: a valid open descriptor.
    if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Proof that a link is using its index directory: while this lives, no
/// other link removes it. Dropping it releases the lock.
#[derive(Debug)]
pub struct InUse(#[allow(dead_code)] File);

/// Creates `dir` like [`create`], locked for as long as the [`InUse`]
/// lives. It is made and locked under a staging name and only then
/// renamed (never over anything already there), so no other link ever
/// sees it unlocked under its own name.
pub fn create_locked(dir: &Path) -> io::Result<InUse> {
    let mut staging = dir.as_os_str().to_os_string();
    staging.push(format!("{STAGING}-{}", std::process::id()));
    let staging = std::path::PathBuf::from(staging);
    create(&staging)?;
    let locked = open_dir(&staging).and_then(|f| flock(&f, true).map(|()| f)).and_then(|f| {
        rename_noreplace(&staging, dir)?;
        Ok(f)
    });
    if locked.is_err() {
        let _ = std::fs::remove_dir(&staging);
    }
    locked.map(InUse)
}

fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two valid C strings; AT_FDCWD resolves them like open(2).
    let r =
        unsafe { libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::RENAME_NOREPLACE) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Says that `dir` was kept on purpose: [`remove_stale`] leaves it alone.
pub fn mark_kept(dir: &Path) {
    let _ = std::fs::write(dir.join(KEPT), "kept by kdthin-ld for the user; remove when done\n");
}

/// Removes the directories in `parent` whose names start with `prefix`,
/// that belong to our uid, were not kept on purpose and that no link holds
/// locked: left behind by links that were killed. Those that may not be
/// locked yet (see [`may_be_unlocked`]) must also be a minute old. Returns
/// how many were removed. Best effort: a directory we cannot judge is
/// left alone.
pub fn remove_stale(parent: &Path, prefix: &str) -> usize {
    remove_stale_older_than(parent, prefix, STALE_AFTER)
}

/// A staging name, or one from a kdthin-ld that did not lock (pid-named):
/// a live link's directory can be unlocked under such a name.
fn may_be_unlocked(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or("");
    let ours = last.len() == SUFFIX_LEN && last.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    name.ends_with(STAGING) || staging_pid(name).is_some() || !ours
}

/// The process that made a staging directory, when its name says.
fn staging_pid(name: &str) -> Option<i32> {
    let (_, pid) = name.rsplit_once(concat!(".new", "-"))?;
    pid.parse().ok().filter(|&p| p > 0)
}

/// A staging directory whose maker is gone (killed between making and
/// locking it, by SIGKILL say): nobody can still lock it, so it need not
/// wait out [`STALE_AFTER`]. A live process, or one we may not signal,
/// keeps it.
fn maker_gone(name: &str) -> bool {
    staging_pid(name).is_some_and(|pid| {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == -1 && *libc::__errno_location() == libc::ESRCH }
    })
}

fn remove_stale_older_than(parent: &Path, prefix: &str, age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else { return 0 };
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let now = SystemTime::now();
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        let path = e.path();
        // Not followed: a symlink is somebody else's business.
        let Ok(md) = std::fs::symlink_metadata(&path) else { continue };
        let old = !may_be_unlocked(&name)
            || maker_gone(&name)
            || md.modified().ok().and_then(|m| now.duration_since(m).ok()).is_some_and(|d| d >= age);
        if !md.is_dir() || md.uid() != uid || !old || path.join(KEPT).exists() {
            continue;
        }
        let Ok(f) = open_dir(&path) else { continue };
        if flock(&f, false).is_err() {
            continue; // a live link's
        }
        // Held while removing: a link cannot start using it meanwhile
        // (names are never reused anyway).
        if std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn suffixes_are_unpredictable_names() {
        let a = unique_suffix();
        let b = unique_suffix();
        assert_eq!(a.len(), 12);
        assert!(a.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "{a}");
        assert_ne!(a, b, "two draws of 62 bits");
    }

    #[test]
    fn created_fresh_with_mode_0700() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        // SAFETY: umask only changes this process's creation mask; a
        // permissive one must not widen the directory.
        let old = unsafe { libc::umask(0) };
        let made = create(&p);
        unsafe { libc::umask(old) };
        made.unwrap();
        assert_eq!(mode(&p), 0o700);
    }

    #[test]
    fn an_existing_directory_or_symlink_is_never_used() {
        let d = tempfile::tempdir().unwrap();
        let planted = d.path().join("planted");
        std::fs::create_dir(&planted).unwrap();
        let e = create(&planted).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let victim = d.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(create(&link).is_err());
        assert!(create_locked(&link).is_err());
        // A dangling symlink is not followed either.
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &dangling).unwrap();
        assert!(create(&dangling).is_err());
        assert!(!d.path().join("nowhere").exists());
    }

    #[test]
    fn stale_directories_of_dead_links_go_live_ones_stay() {
        let d = tempfile::tempdir().unwrap();
        let live = d.path().join("kdthin.live.aaaa");
        let dead = d.path().join("kdthin.dead.bbbb");
        let dead_new = d.path().join(format!("kdthin.dead.{}", unique_suffix()));
        let staging = d.path().join(format!("kdthin.stage.{}{STAGING}", unique_suffix()));
        let other = d.path().join("unrelated");
        let held = create_locked(&live).unwrap();
        create(&dead).unwrap();
        std::fs::write(dead.join("x.thinlto.bc"), "index").unwrap();
        create(&other).unwrap();
        let kept = d.path().join("kdthin.kept.dddd");
        create(&kept).unwrap();
        mark_kept(&kept);
        create(&dead_new).unwrap();
        create(&staging).unwrap();
        // Our own names are locked before they are given: unlocked, one is
        // dead at once. Staging and pid-named (older versions') ones may
        // be a live link's, unlocked: not before they are a minute old.
        assert_eq!(remove_stale(d.path(), INDEX_PREFIX), 1);
        assert!(!dead_new.exists(), "a dead link's directory is removed at once");
        assert!(dead.exists() && staging.exists());
        assert_eq!(remove_stale_older_than(d.path(), INDEX_PREFIX, Duration::ZERO), 2);
        assert!(!dead.exists(), "a dead link's directory is removed");
        assert!(!staging.exists(), "an old staging directory is removed");
        assert!(live.exists(), "a live link's directory is kept");
        assert!(other.exists(), "only kdthin.* directories are ours to judge");
        assert!(kept.exists(), "kept on purpose (KDTHIN_SAVE_TEMPS, failed backends)");
        drop(held);
        // Another test thread forking at that moment holds a copy of the
        // locked descriptor until its child execs (close-on-exec): the
        // lock is free again within moments.
        let mut removed = 0;
        for _ in 0..100 {
            removed = remove_stale_older_than(d.path(), INDEX_PREFIX, Duration::ZERO);
            if removed > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(removed, 1);
        assert!(!live.exists(), "released: stale now");
        // A staging directory names its maker: a dead maker's goes at once,
        // a live one's (ours) waits its minute.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let orphan = d.path().join(format!("kdthin.orphan.{}{STAGING}-{dead_pid}", unique_suffix()));
        let making = d.path().join(format!("kdthin.making.{}{STAGING}-{}", unique_suffix(), std::process::id()));
        create(&orphan).unwrap();
        create(&making).unwrap();
        assert_eq!(remove_stale(d.path(), "kdthin.orphan."), 1);
        assert!(!orphan.exists(), "its maker is gone: nobody will lock it");
        assert_eq!(remove_stale(d.path(), "kdthin.making."), 0);
        assert!(making.exists(), "its maker lives: it may be about to lock it");
    }

    #[test]
    fn locked_before_it_has_its_name() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join(format!("kdthin.x.{}", unique_suffix()));
        let held = create_locked(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert!(std::fs::read_dir(d.path()).unwrap().count() == 1, "the staging name is gone");
        // Locked under its final name: another link cannot lock it.
        assert!(flock(&open_dir(&dir).unwrap(), false).is_err());
        assert_eq!(remove_stale_older_than(d.path(), INDEX_PREFIX, Duration::ZERO), 0);
        // Never renamed over something already there.
        assert_eq!(create_locked(&dir).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        drop(held);
    }

    #[test]
    fn a_symlink_named_like_ours_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join("kdthin.trap.cccc")).unwrap();
        assert_eq!(remove_stale_older_than(d.path(), INDEX_PREFIX, Duration::ZERO), 0);
        assert!(victim.join("keep").exists());
    }
}

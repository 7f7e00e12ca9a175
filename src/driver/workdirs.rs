//! The link's private directories: the work directory beside the output
//! and the index directory (a tmpfs when there is one).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::exec::{self};
use crate::private_dir;
use crate::settings::Settings;

/// `<dir of output>/.tmp_kdthin.<name>.<unique>`: on the output's file
/// system (renames stay cheap) and matched by `make clean`'s `.tmp_*`
/// pattern. `unique` is [`private_dir::unique_suffix`]: see there why.
pub fn work_dir_for(output: &Path, unique: &str) -> PathBuf {
    let name = output.file_name().unwrap_or(OsStr::new("a.out")).to_string_lossy();
    let dir = output.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    dir.join(format!(".tmp_kdthin.{name}.{unique}"))
}

/// Where the thin-link's index files go: `KDTHIN_TMPDIR`, else a tmpfs
/// (`$XDG_RUNTIME_DIR`, `/dev/shm`), else the work directory. Thousands of
/// small files that live for one link cost far less on tmpfs (0.12 s
/// instead of 0.33 s for a tinyconfig thin-link on ext4). Named
/// `kdthin.<name>.<unique>` after the work directory.
pub fn index_dir_for(work: &Path, settings: &Settings) -> PathBuf {
    let name = work.file_name().unwrap_or(OsStr::new(".tmp_kdthin")).to_string_lossy();
    let name = format!("kdthin{}", name.trim_start_matches(".tmp_kdthin"));
    if let Some(dir) = &settings.tmpdir {
        return dir.join(name);
    }
    let candidates = [settings.runtime_dir.clone(), Some(PathBuf::from("/dev/shm"))];
    candidates
        .into_iter()
        .flatten()
        .find(|d| is_writable_tmpfs(d))
        .map(|d| d.join(&name))
        .unwrap_or_else(|| work.join("idx"))
}

/// Creates the index directory, private and locked for this link (see
/// [`private_dir`]). In a shared directory, first removes what killed
/// links left there.
pub(super) fn create_index_dir(dir: &Path, work: &Path, settings: &Settings) -> Result<private_dir::InUse> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    if !dir.starts_with(work) {
        if settings.tmpdir.is_some() {
            // The user named this directory: it may be made.
            std::fs::create_dir_all(parent)
                .with_context(|| format!("KDTHIN_TMPDIR={}: cannot create", parent.display()))?;
        }
        private_dir::remove_stale(parent, private_dir::INDEX_PREFIX);
    }
    exec::signals::create_registered(dir, private_dir::create_locked)
        .with_context(|| format!("{}: cannot create index directory", dir.display()))
}

/// Creates the work directory beside the output, private and locked for
/// this link, after removing the ones killed links of the same output
/// left there (make clean would, but a relink should not wait for it).
pub(super) fn create_work_dir(work: &Path) -> std::io::Result<private_dir::InUse> {
    if let (Some(parent), Some(name)) = (work.parent(), work.file_name()) {
        let name = name.to_string_lossy();
        let prefix = &name[..name.rfind('.').map_or(name.len(), |i| i + 1)];
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        private_dir::remove_stale(parent, prefix);
    }
    private_dir::create_locked(work)
}

pub(super) fn is_writable_tmpfs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a zeroed out-struct.
    let ok = unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0 && st.f_type as i64 == TMPFS_MAGIC;
    // SAFETY: as above; access() only reads the path.
    ok && unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0
}

/// Remove everything under `dir` except `keep` (and the directories that
/// lead to them).
pub(super) fn prune_except(dir: &Path, keep: &HashSet<PathBuf>) {
    fn walk(d: &Path, keep: &HashSet<PathBuf>) -> bool {
        let mut kept_any = false;
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    if walk(&p, keep) {
                        kept_any = true;
                    } else {
                        let _ = std::fs::remove_dir(&p);
                    }
                } else if keep.contains(&p) {
                    kept_any = true;
                } else {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        kept_any
    }
    if !walk(dir, keep) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

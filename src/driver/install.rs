//! After a good link: natives beside their bitcode, and archives of
//! natives where the inputs were archives of bitcode.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::exec::{self};
use crate::plan::NewMember;
use crate::thin_archive;

/// Puts a copy of `from` (kept: the link's own) at `to` so that `to` is
/// always either the old file or the complete new one: a second hard link
/// to `from`, made in the work directory and renamed over `to` (one file
/// system, as a build tree is), so a link killed meanwhile leaves nothing
/// beside `to`. Across file systems: a copy beside `to`, renamed.
pub(super) fn install_native(from: &Path, to: &Path) -> Result<()> {
    let mut staged = from.as_os_str().to_os_string();
    staged.push(".install");
    let staged = PathBuf::from(staged);
    let _ = std::fs::remove_file(&staged);
    let linked = std::fs::hard_link(from, &staged).and_then(|()| std::fs::rename(&staged, to));
    match linked {
        Ok(()) => return Ok(()),
        // Only another file system calls for a copy: anything else (the
        // work directory gone under a signal's cleanup) is an error.
        Err(e) if e.raw_os_error() != Some(libc::EXDEV) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e).with_context(|| format!("{}: cannot write", to.display()));
        }
        Err(_) => {
            let _ = std::fs::remove_file(&staged);
        }
    }
    let mut tmp = to.as_os_str().to_os_string();
    tmp.push(format!(".tmp_kdthin.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    // Registered as it is created: a signal's cleanup removes it.
    let copied = exec::signals::create_registered(&tmp, |t| std::fs::copy(from, t));
    let result = copied.and_then(|_| std::fs::rename(&tmp, to));
    exec::signals::unregister_cleanup(&tmp);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("{}: cannot write", to.display()))
}

pub(super) fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

/// A thin archive of native objects with a symbol table, in the work dir.
/// `own` holds the natives of the modules the thin-link used.
pub(super) fn write_thin_archive(
    cwd: &Path,
    path: &Path,
    members: &[NewMember],
    own: &HashMap<usize, PathBuf>,
) -> Result<()> {
    let mut list = Vec::with_capacity(members.len());
    for m in members {
        let p = match m {
            NewMember::Native(p) => p,
            NewMember::Module(n) => match own.get(n) {
                Some(p) => p,
                // Not extracted by the thin-link: the final link would not
                // extract its (empty) native object either.
                None => continue,
            },
        };
        let name = absolute(cwd, p).to_string_lossy().into_owned();
        list.push(thin_archive::Member::from_file(p, name).with_context(|| format!("{}: cannot read", p.display()))?);
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let f = std::fs::File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    thin_archive::write(&mut w, &list)
        .and_then(|()| w.flush())
        .with_context(|| format!("{}: cannot write archive", path.display()))?;
    Ok(())
}

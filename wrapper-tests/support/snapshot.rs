//! The state of every file in a tree, to check what a link changed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File { contents: Vec<u8>, mtime: SystemTime },
    Symlink(PathBuf),
}

/// Contents and mtime of every file under a root (directories by presence
/// only: their mtimes change whenever a file is added).
pub struct Snapshot {
    entries: BTreeMap<PathBuf, Entry>,
}

impl Snapshot {
    pub fn take(root: &Path) -> Snapshot {
        let mut entries = BTreeMap::new();
        walk(root, Path::new(""), &mut entries);
        Snapshot { entries }
    }

    /// Relative paths of everything in the tree.
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.entries.keys()
    }

    /// Paths added, removed or changed (contents or mtime) since `before`,
    /// for which `allowed` is false. Each comes with what happened to it.
    pub fn unexpected_changes(&self, before: &Snapshot, allowed: impl Fn(&Path) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        for (p, old) in &before.entries {
            match self.entries.get(p) {
                None if !allowed(p) => out.push(format!("removed:  {}", p.display())),
                Some(new) if new != old && !allowed(p) => {
                    let what = match (old, new) {
                        (Entry::File { contents: a, .. }, Entry::File { contents: b, .. }) if a == b => "touched",
                        _ => "modified",
                    };
                    out.push(format!("{what}: {}", p.display()));
                }
                _ => {}
            }
        }
        for p in self.entries.keys() {
            if !before.entries.contains_key(p) && !allowed(p) {
                out.push(format!("added:    {}", p.display()));
            }
        }
        out
    }

    /// Panics listing every change `allowed` does not cover.
    #[track_caller]
    pub fn assert_only_changes(&self, before: &Snapshot, allowed: impl Fn(&Path) -> bool) {
        let bad = self.unexpected_changes(before, allowed);
        assert!(bad.is_empty(), "unexpected changes in the tree:\n  {}", bad.join("\n  "));
    }
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    let dir = root.join(rel);
    let rd = fs::read_dir(&dir).unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()));
    for ent in rd {
        let ent = ent.expect("dir entry");
        let rel = rel.join(ent.file_name());
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        if meta.file_type().is_symlink() {
            out.insert(rel, Entry::Symlink(fs::read_link(&path).expect("readlink")));
        } else if meta.is_dir() {
            out.insert(rel.clone(), Entry::Dir);
            walk(root, &rel, out);
        } else {
            // A file we cannot read (a permission test) is kept by mtime.
            let contents = fs::read(&path).unwrap_or_default();
            out.insert(rel, Entry::File { contents, mtime: meta.modified().expect("mtime") });
        }
    }
}

//! Lexical path helpers. We never canonicalize (symlinks, absolute paths)
//! the paths the user gave: ld.lld names ThinLTO modules after the path as
//! spelled, and kbuild's `.cmd` files record relative paths.

use std::path::{Component, Path, PathBuf};

/// Remove `.` and resolve `dir/..` lexically; leading `..` are kept.
/// kbuild records paths such as `arch/arm64/kvm/../../../virt/kvm/x.o`.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) | Some(Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            _ => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

/// Join an archive member name to the archive's directory, as ld.lld and
/// GNU ar do for thin archives (absolute member names stay absolute).
pub fn thin_member_path(archive: &Path, member: &str) -> PathBuf {
    let m = Path::new(member);
    if m.is_absolute() {
        return normalize(m);
    }
    let dir = archive.parent().unwrap_or(Path::new(""));
    normalize(&dir.join(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_keeps_relative_and_folds_dotdot() {
        assert_eq!(normalize(Path::new("arch/arm64/kvm/../../../virt/kvm/x.o")), PathBuf::from("virt/kvm/x.o"));
        assert_eq!(normalize(Path::new("./a/./b.o")), PathBuf::from("a/b.o"));
        assert_eq!(normalize(Path::new("../x/../y.o")), PathBuf::from("../y.o"));
        assert_eq!(normalize(Path::new("/a/../../b")), PathBuf::from("/b"));
    }

    #[test]
    fn thin_members_are_relative_to_the_archive() {
        assert_eq!(thin_member_path(Path::new("lib/lib.a"), "string.o"), PathBuf::from("lib/string.o"));
        assert_eq!(thin_member_path(Path::new("vmlinux.a"), "init/main.o"), PathBuf::from("init/main.o"));
        assert_eq!(thin_member_path(Path::new("x/y.a"), "/abs/m.o"), PathBuf::from("/abs/m.o"));
    }
}

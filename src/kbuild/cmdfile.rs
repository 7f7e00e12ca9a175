//! Reading kbuild's `.<name>.o.cmd` files.
//!
//! After running a command, kbuild saves it so the next make run can tell
//! whether the command line changed (scripts/Kbuild.include, `cmd_and_savecmd`
//! and scripts/basic/fixdep):
//!
//! ```text
//! savedcmd_init/main.o := clang-22 -Wp,-MMD,init/.main.o.d ... -c -o init/main.o init/main.c
//! ```
//!
//! Linux 6.1 and tools/build spell it `cmd_<target> := `. The file is
//! included back into make, so the command is escaped for make by
//! `make-cmd`: `$` is written `$$` and `#` is written `$(pound)`. (Its other
//! step, `escsq`, only protects the text inside `printf '...'` and is undone
//! by the shell that writes the file.) What remains after unescaping is the
//! shell command string.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::paths::normalize;

/// Why a `.cmd` file could not be used. Never silently ignored: the caller
/// falls back to in-process ThinLTO for the link and prints this.
#[derive(Debug)]
pub enum CmdFileError {
    Missing {
        cmd: PathBuf,
    },
    Unreadable {
        cmd: PathBuf,
        err: std::io::Error,
    },
    Unparsable {
        cmd: PathBuf,
        reason: String,
    },
    /// The .cmd is older than the object: kbuild rewrites it after each
    /// compile, so it describes an earlier compile.
    Stale {
        cmd: PathBuf,
        obj: PathBuf,
    },
    /// The object itself could not be examined (needed for the age check).
    Object {
        obj: PathBuf,
        err: std::io::Error,
    },
}

impl fmt::Display for CmdFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdFileError::Missing { cmd } => write!(f, "{}: no such file", cmd.display()),
            CmdFileError::Unreadable { cmd, err } => write!(f, "{}: {err}", cmd.display()),
            CmdFileError::Unparsable { cmd, reason } => write!(f, "{}: {reason}", cmd.display()),
            CmdFileError::Stale { cmd, obj } => {
                write!(f, "{} is older than {}: it records an earlier compile", cmd.display(), obj.display())
            }
            CmdFileError::Object { obj, err } => write!(f, "{}: {err}", obj.display()),
        }
    }
}

impl std::error::Error for CmdFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CmdFileError::Unreadable { err, .. } | CmdFileError::Object { err, .. } => Some(err),
            _ => None,
        }
    }
}

/// `dir/name.o` -> `dir/.name.o.cmd`
///
/// kbuild names the file `$(dir $@).$(notdir $@).cmd` with `$@` as spelled
/// in the Makefile, e.g. `arch/arm64/kvm/../../../virt/kvm/.x.o.cmd`; the
/// lexical normalisation gives the same file because kbuild's output
/// directories are real directories, not symlinks.
pub fn cmd_file_for(obj: &Path) -> PathBuf {
    let obj = normalize(obj);
    match obj.file_name() {
        Some(name) => {
            let mut dot = std::ffi::OsString::from(".");
            dot.push(name);
            dot.push(".cmd");
            obj.with_file_name(dot)
        }
        // No file name (`.`, `..`, `/`): no object can live there; give a
        // path that will be reported as missing.
        None => obj.join(".cmd"),
    }
}

/// The shell command recorded for `target` in the text of a `.cmd` file.
///
/// Lines are `savedcmd_<target> := ` (6.x) or `cmd_<target> := ` (6.1,
/// tools/build); targets are compared after lexical normalisation. When no
/// target matches but the file records exactly one command, that one is
/// used: the file name already ties it to the object, and the recorded
/// target may be absolute where we were given a relative path (tools/build).
pub fn parse_cmd_file(text: &str, target: &Path) -> Result<String, String> {
    let want = normalize(target);
    let commands: Vec<(&str, &str)> = text.lines().filter_map(command_line).collect();
    // make would use the last assignment of the variable.
    let value = match commands.iter().rev().find(|(t, _)| normalize(Path::new(t)) == want) {
        Some((_, v)) => v,
        None => match commands.as_slice() {
            [(_, v)] => v,
            [] => return Err("no `savedcmd_<target> :=` or `cmd_<target> :=` line".into()),
            _ => {
                let found: Vec<&str> = commands.iter().map(|(t, _)| *t).collect();
                return Err(format!("no command for {}; found commands for {}", target.display(), found.join(", ")));
            }
        },
    };
    if value.ends_with('\\') {
        // make would join the next line; kbuild never writes that.
        return Err("command line ends in a make line continuation".into());
    }
    unescape_make(value)
}

/// `(target, value)` of a `savedcmd_<target> := <value>` or
/// `cmd_<target> := <value>` line.
fn command_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("savedcmd_").or_else(|| line.strip_prefix("cmd_"))?;
    let (target, value) = rest.split_once(" := ")?;
    // `:=` strips leading blanks from the value; trailing ones are harmless
    // to the shell.
    Some((target, value.trim_start_matches([' ', '\t'])))
}

/// Undo `make-cmd`: `$$` -> `$`, `$(pound)` -> `#`.
///
/// Any other `$` would be a make reference that make expands when it reads
/// the file; `make-cmd` never writes one, so one here means the file is not
/// what we think it is.
pub fn unescape_make(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        if let Some(r) = rest.strip_prefix("$$") {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("$(pound)") {
            out.push('#');
            rest = r;
        } else {
            let shown: String = rest.chars().take(20).collect();
            return Err(format!("unexpected make reference at `{shown}`"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The start of a `.cmd` file, up to its `deps_<target> :=` line. fixdep
/// writes the command first, then `source_`, then `deps_` and the list of
/// every header the object depends on (90 KB on defconfig, times ~3,000
/// objects per link), which no command line follows. Files without a
/// `deps_` line (tools/build, hand-written) are read whole.
fn read_until_deps(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    const MARK: &[u8] = b"\ndeps_";
    let mut f = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(16 << 10);
    let mut chunk = [0u8; 16 << 10];
    loop {
        let n = match f.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(buf);
        }
        let from = buf.len().saturating_sub(MARK.len() - 1);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf[from..].windows(MARK.len()).position(|w| w == MARK) {
            buf.truncate(from + at + 1);
            return Ok(buf);
        }
    }
}

/// Read the command kbuild recorded for the object `obj`.
pub fn read_command_for(obj: &Path) -> Result<String, CmdFileError> {
    let cmd = cmd_file_for(obj);
    let bytes = read_until_deps(&cmd).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => CmdFileError::Missing { cmd: cmd.clone() },
        _ => CmdFileError::Unreadable { cmd: cmd.clone(), err },
    })?;
    // Compare at full (nanosecond) precision: a compile and the .cmd write
    // that follows it usually land within the same second.
    let cmd_time = std::fs::metadata(&cmd)
        .and_then(|m| m.modified())
        .map_err(|err| CmdFileError::Unreadable { cmd: cmd.clone(), err })?;
    let obj_time = std::fs::metadata(obj)
        .and_then(|m| m.modified())
        .map_err(|err| CmdFileError::Object { obj: obj.to_path_buf(), err })?;
    if cmd_time < obj_time {
        return Err(CmdFileError::Stale { cmd, obj: obj.to_path_buf() });
    }
    let unparsable = |reason: String| CmdFileError::Unparsable { cmd: cmd.clone(), reason };
    let text = String::from_utf8(bytes).map_err(|_| unparsable("not valid UTF-8".into()))?;
    parse_cmd_file(&text, obj).map_err(unparsable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    const MAIN_612: &str = include_str!("testdata/612-lib-union_find.o.cmd");
    const WEAK_TOOLS: &str = include_str!("testdata/612-tools-objtool-weak.o.cmd");
    const WIREGUARD_61: &str = include_str!("testdata/61-wireguard-main.o.cmd");
    const KVM_ARM64: &str = include_str!("testdata/612-arm64-kvm_main.o.cmd");
    const ZOFFSET: &str = include_str!("testdata/612-arch-x86-boot-zoffset.h.cmd");
    const VMLINUX_O: &str = include_str!("testdata/612-vmlinux.o.cmd");

    #[test]
    fn reading_stops_at_the_dependency_list() {
        let dir = tempfile::tempdir().unwrap();
        let obj = dir.path().join("x.o");
        std::fs::write(&obj, b"").unwrap();
        let deps: String = (0..5000).map(|i| format!("  include/linux/h{i}.h \\\n")).collect();
        // A savedcmd after the deps_ line would be make's last assignment;
        // fixdep never writes one, and it is not read.
        let text = format!(
            "savedcmd_{o} := clang -c -o {o} x.c\n\nsource_{o} := x.c\n\ndeps_{o} := \\\n{deps}\n{o}: $(deps_{o})\nsavedcmd_{o} := other\n",
            o = obj.display()
        );
        std::fs::write(cmd_file_for(&obj), &text).unwrap();
        let head = read_until_deps(&cmd_file_for(&obj)).unwrap();
        assert!(head.ends_with(b"\n") && !head.windows(5).any(|w| w == b"deps_"), "{}", String::from_utf8_lossy(&head));
        assert_eq!(read_command_for(&obj).unwrap(), format!("clang -c -o {} x.c", obj.display()));
        // Real files, whole and cut: the same command.
        for (text, target) in [(MAIN_612, "lib/union_find.o"), (WIREGUARD_61, "drivers/net/wireguard/main.o")] {
            let p = dir.path().join(".t.cmd");
            std::fs::write(&p, text).unwrap();
            let head = String::from_utf8(read_until_deps(&p).unwrap()).unwrap();
            assert!(head.len() < text.len(), "{target}: nothing cut");
            assert_eq!(parse_cmd_file(&head, Path::new(target)), parse_cmd_file(text, Path::new(target)));
        }
    }

    #[test]
    fn cmd_file_names() {
        assert_eq!(cmd_file_for(Path::new("init/main.o")), PathBuf::from("init/.main.o.cmd"));
        assert_eq!(cmd_file_for(Path::new("main.o")), PathBuf::from(".main.o.cmd"));
        assert_eq!(cmd_file_for(Path::new("./init/./main.o")), PathBuf::from("init/.main.o.cmd"));
        assert_eq!(cmd_file_for(Path::new("/o/init/main.o")), PathBuf::from("/o/init/.main.o.cmd"));
        assert_eq!(
            cmd_file_for(Path::new("arch/arm64/kvm/../../../virt/kvm/kvm_main.o")),
            PathBuf::from("virt/kvm/.kvm_main.o.cmd")
        );
    }

    #[test]
    fn savedcmd_612() {
        let cmd = parse_cmd_file(MAIN_612, Path::new("lib/union_find.o")).unwrap();
        assert!(cmd.starts_with("clang-22 -Wp,-MMD,lib/.union_find.o.d -nostdinc "), "{cmd}");
        assert!(cmd.contains(" -DKBUILD_MODNAME='\"union_find\"' "), "{cmd}");
        assert!(cmd.trim_end().ends_with(" -c -o lib/union_find.o /work/kernels/linux-source-6.12/lib/union_find.c"));
        // The same target spelled differently still matches.
        assert_eq!(parse_cmd_file(MAIN_612, Path::new("./lib/x/../union_find.o")).unwrap(), cmd);
    }

    #[test]
    fn cmd_61_with_deps_and_quotes() {
        let cmd = parse_cmd_file(WIREGUARD_61, Path::new("drivers/net/wireguard/main.o")).unwrap();
        assert!(cmd.starts_with("clang -Wp,-MMD,drivers/net/wireguard/.main.o.d "), "{cmd}");
        assert!(cmd.contains(r#" -D'pr_fmt(fmt)=KBUILD_MODNAME ": " fmt' "#), "{cmd}");
        assert!(!cmd.contains("deps_") && !cmd.contains("source_"));
    }

    #[test]
    fn tools_build_pound_and_absolute_target() {
        // tools/build records an absolute target; the only command is used.
        let cmd = parse_cmd_file(WEAK_TOOLS, Path::new("tools/objtool/weak.o")).unwrap();
        assert!(cmd.contains(r#" -D"BUILD_STR(s)=#s" "#), "{cmd}");
        assert!(!cmd.contains("$(pound)"));
    }

    #[test]
    fn dotdot_targets_match_after_normalising() {
        let cmd = parse_cmd_file(KVM_ARM64, Path::new("virt/kvm/kvm_main.o")).unwrap();
        assert!(cmd.contains(" -c -o arch/arm64/kvm/../../../virt/kvm/kvm_main.o "), "{cmd}");
        let same = parse_cmd_file(KVM_ARM64, Path::new("arch/arm64/kvm/../../../virt/kvm/kvm_main.o")).unwrap();
        assert_eq!(cmd, same);
    }

    #[test]
    fn dollars_and_pounds() {
        let cmd = parse_cmd_file(ZOFFSET, Path::new("arch/x86/boot/zoffset.h")).unwrap();
        assert!(cmd.contains(r"\|z_.*\)$/#define ZO_\2 0x\1/p'"), "{cmd}");
        assert_eq!(unescape_make("a$$b$$$$c$(pound)d$$(pound)").unwrap(), "a$b$$c#d$(pound)");
        assert!(unescape_make("x $(CC) y").unwrap_err().contains("$(CC) y"));
        assert!(unescape_make("x $").is_err());
    }

    #[test]
    fn objtool_suffix_is_kept_for_the_shell() {
        let cmd = parse_cmd_file(VMLINUX_O, Path::new("vmlinux.o")).unwrap();
        assert!(cmd.starts_with("ld.lld-22 -m elf_x86_64 "));
        assert!(cmd.contains("; ./tools/objtool/objtool "));
    }

    #[test]
    fn several_commands_without_a_match() {
        let text = "savedcmd_a.o := cc -c a.c\nsavedcmd_b.o := cc -c b.c\n";
        assert_eq!(parse_cmd_file(text, Path::new("b.o")).unwrap(), "cc -c b.c");
        let err = parse_cmd_file(text, Path::new("c.o")).unwrap_err();
        assert!(err.contains("a.o, b.o"), "{err}");
    }

    #[test]
    fn garbage_is_unparsable() {
        assert!(parse_cmd_file("", Path::new("a.o")).is_err());
        assert!(parse_cmd_file("\u{0}\u{1}garbage := x\n", Path::new("a.o")).is_err());
        assert!(parse_cmd_file("source_a.o := a.c\n", Path::new("a.o")).is_err());
        assert!(parse_cmd_file("savedcmd_a.o := cc \\\n -c a.c\n", Path::new("a.o")).is_err());
    }

    /// An object and its .cmd in a temp dir, with the given mtimes.
    fn fixture(text: &[u8], cmd_age: Duration) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let obj = dir.path().join("lib/union_find.o");
        std::fs::create_dir_all(obj.parent().unwrap()).unwrap();
        std::fs::write(&obj, b"BC\xC0\xDE").unwrap();
        let cmd = cmd_file_for(&obj);
        std::fs::write(&cmd, text).unwrap();
        let now = SystemTime::now();
        std::fs::File::options().write(true).open(&obj).unwrap().set_modified(now).unwrap();
        std::fs::File::options().write(true).open(&cmd).unwrap().set_modified(now - cmd_age).unwrap();
        (dir, obj)
    }

    #[test]
    fn reads_a_fresh_cmd_file() {
        let (_dir, obj) = fixture(MAIN_612.as_bytes(), Duration::ZERO);
        let cmd = read_command_for(&obj).unwrap();
        assert!(cmd.starts_with("clang-22 "));
    }

    #[test]
    fn detects_stale_cmd_files_to_the_nanosecond() {
        let (_dir, obj) = fixture(MAIN_612.as_bytes(), Duration::from_nanos(1000));
        assert!(matches!(read_command_for(&obj), Err(CmdFileError::Stale { .. })));
    }

    #[test]
    fn missing_and_garbage_files() {
        let dir = tempfile::tempdir().unwrap();
        let obj = dir.path().join("a.o");
        std::fs::write(&obj, b"BC\xC0\xDE").unwrap();
        let err = read_command_for(&obj).unwrap_err();
        assert!(matches!(&err, CmdFileError::Missing { cmd } if cmd == &dir.path().join(".a.o.cmd")), "{err}");

        let (_dir, obj) = fixture(b"\x7fELF\x02\x01\x01\xff\xfe", Duration::ZERO);
        let err = read_command_for(&obj).unwrap_err();
        assert!(matches!(&err, CmdFileError::Unparsable { reason, .. } if reason.contains("UTF-8")), "{err}");

        let (_dir, obj) = fixture(b"all: foo\n\tcc -c foo.c\n", Duration::ZERO);
        let err = read_command_for(&obj).unwrap_err();
        assert!(matches!(err, CmdFileError::Unparsable { .. }), "{err}");
        assert!(err.to_string().contains(".union_find.o.cmd: no `savedcmd_"), "{err}");
    }

    #[test]
    fn unreadable_cmd_file() {
        // A directory where the file should be: reading fails, not NotFound.
        let dir = tempfile::tempdir().unwrap();
        let obj = dir.path().join("a.o");
        std::fs::write(&obj, b"").unwrap();
        std::fs::create_dir(dir.path().join(".a.o.cmd")).unwrap();
        assert!(matches!(read_command_for(&obj), Err(CmdFileError::Unreadable { .. })));
    }
}

//! The progress line, seen from outside: drawn on a terminal (a pseudo-
//! terminal here), and nowhere else: not in CI, not under `make -s`, not
//! when verbose, not on `TERM=dumb`, not into a pipe.

use crate::support::*;
use std::fs;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What progress.rs draws with: back to column 0, clear the line.
const ERASE: &str = "\r\x1b[K";

/// A compiled tree whose backends each take a quarter of a second longer
/// (a stand-in clang-22 sleeps first), so with KDTHIN_JOBS=1 the backend
/// phase lasts well past the progress line's 300 ms delay.
fn slow_tree() -> Tree {
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    let slow = t.scratch().join("slowbin/clang-22");
    fs::create_dir_all(slow.parent().unwrap()).unwrap();
    fs::write(&slow, format!("#!/bin/sh\nsleep 0.25\nexec {CLANG} \"$@\"\n")).unwrap();
    fs::set_permissions(&slow, fs::Permissions::from_mode(0o755)).unwrap();
    for obj in VMLINUX_BITCODE {
        let cmd = Tree::cmd_file(obj);
        t.edit(&cmd, |s| s.replacen(&format!(" := {CLANG} "), &format!(" := {} ", slow.display()), 1));
    }
    t
}

/// A pseudo-terminal, 200 columns wide, in raw mode: no `\n` -> `\r\n`
/// translation, so every `\r` read from it was written by the program.
fn open_pty() -> (fs::File, OwnedFd) {
    // SAFETY: plain libc calls on descriptors this function owns; every
    // out-parameter lives across its call.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(master >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master_file = fs::File::from_raw_fd(master);
        assert_eq!(libc::grantpt(master), 0, "grantpt");
        assert_eq!(libc::unlockpt(master), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0, "ptsname_r");
        let slave = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        assert!(slave >= 0, "open pty slave: {}", std::io::Error::last_os_error());
        let slave = OwnedFd::from_raw_fd(slave);
        let mut tio: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(std::os::fd::AsRawFd::as_raw_fd(&slave), &mut tio), 0);
        libc::cfmakeraw(&mut tio);
        assert_eq!(libc::tcsetattr(std::os::fd::AsRawFd::as_raw_fd(&slave), libc::TCSANOW, &tio), 0);
        let ws = libc::winsize { ws_row: 50, ws_col: 200, ws_xpixel: 0, ws_ypixel: 0 };
        assert_eq!(libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&slave), libc::TIOCSWINSZ, &ws), 0);
        (master_file, slave)
    }
}

enum Output {
    /// stdout and stderr on one pseudo-terminal, as under an interactive make.
    Terminal,
    /// stdout and stderr into pipes.
    Pipes,
}

/// Link vmlinux.o with kdthin-ld, KDTHIN_JOBS=1, `CI` and
/// `KBUILD_VERBOSE` unset, TERM=xterm, then `envs`. Returns the exit
/// status and everything written (stdout then stderr for pipes).
fn link(t: &Tree, out: Output, envs: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let argv = t.link_argv("vmlinux.o", Linker::Kdthin);
    let mut cmd = Command::new(&argv[0]);
    clean_env(&mut cmd)
        .current_dir(t.root())
        .args(&argv[1..])
        .env_remove("CI")
        .env_remove("KBUILD_VERBOSE")
        .env("TERM", "xterm")
        .env("KDTHIN_JOBS", "1")
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let cmdline = command_line(&cmd);
    let (status, text) = match out {
        Output::Pipes => {
            let o = cmd.output().unwrap_or_else(|e| panic!("cannot start: {e}\n$ {cmdline}"));
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            (o.status, text)
        }
        Output::Terminal => {
            let (mut master, slave) = open_pty();
            cmd.stdout(Stdio::from(slave.try_clone().unwrap())).stderr(Stdio::from(slave));
            let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start: {e}\n$ {cmdline}"));
            // Our copies of the slave side must go, or the reader never
            // sees the end.
            drop(cmd);
            let reader = std::thread::spawn(move || {
                let mut all = Vec::new();
                let mut buf = [0u8; 4096];
                // EIO once the last slave descriptor is closed.
                while let Ok(n) = master.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    all.extend_from_slice(&buf[..n]);
                }
                all
            });
            let deadline = Instant::now() + Duration::from_secs(120);
            let status = loop {
                if let Some(st) = child.try_wait().unwrap() {
                    break st;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("timed out\n$ {cmdline}");
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            (status, String::from_utf8_lossy(&reader.join().unwrap()).into_owned())
        }
    };
    let report = format!("$ {cmdline}\n=> {}\n--- output ---\n{text:?}", describe_status(status));
    eprintln!("{report}");
    (status, text, report)
}

/// `[n/7]` counters in drawn progress lines.
fn counters(text: &str) -> Vec<usize> {
    let total = format!("/{}]", VMLINUX_BITCODE.len());
    text.split(ERASE)
        .filter_map(|line| {
            let end = line.find(&total)?;
            let start = line[..end].rfind('[')? + 1;
            line[start..end].parse().ok()
        })
        .collect()
}

#[test]
fn progress_line_is_drawn_and_erased_on_a_terminal() {
    require_toolchain!();
    let t = slow_tree();
    let (status, text, report) = link(&t, Output::Terminal, &[]);
    assert!(status.success(), "link failed\n{report}");
    let drawn = counters(&text);
    assert!(!drawn.is_empty() && text.contains("  LTO     vmlinux.o  ["), "no progress line was drawn\n{report}");
    assert!(drawn.len() >= 3, "the line is redrawn as time passes\n{report}");
    assert!(drawn.windows(2).all(|w| w[0] <= w[1]), "the count only grows: {drawn:?}\n{report}");
    assert!(drawn.iter().all(|&n| n <= VMLINUX_BITCODE.len()));
    // Erased before the summary line, which then stands alone.
    let last = text.rfind(ERASE).unwrap();
    let after = &text[last + ERASE.len()..];
    let summary = after.lines().next().unwrap_or_default();
    assert!(
        LtoLine::parse(summary).is_some_and(|l| l.output == "vmlinux.o"),
        "the summary does not follow the erased line\n{report}"
    );
    assert!(!after.contains('\r') && !after.contains('\x1b'), "{report}");
}

#[test]
fn no_progress_line_in_ci_make_s_verbose_dumb_or_a_pipe() {
    require_toolchain!();
    let t = slow_tree();
    /// What is different from the terminal case, and how.
    type Case = (&'static str, Output, &'static [(&'static str, &'static str)]);
    let cases: [Case; 6] = [
        ("CI=true", Output::Terminal, &[("CI", "true")]),
        ("CI=1", Output::Terminal, &[("CI", "1")]),
        ("make -s", Output::Terminal, &[("MAKEFLAGS", "s")]),
        ("KDTHIN_VERBOSE=1", Output::Terminal, &[("KDTHIN_VERBOSE", "1")]),
        ("TERM=dumb", Output::Terminal, &[("TERM", "dumb")]),
        ("a pipe", Output::Pipes, &[]),
    ];
    for (what, out, envs) in cases {
        let (status, text, report) = link(&t, out, envs);
        assert!(status.success(), "{what}: link failed\n{report}");
        assert!(
            !text.contains('\r') && !text.contains('\x1b'),
            "{what}: terminal control characters in the output\n{report}"
        );
        // The link did run distributed (not silently something else).
        if what != "make -s" {
            assert!(
                text.lines().filter_map(LtoLine::parse).any(|l| l.output == "vmlinux.o"),
                "{what}: no LTO summary line\n{report}"
            );
        }
    }
}

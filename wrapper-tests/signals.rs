//! SIGTERM (make being interrupted) while backends run: kdthin-ld must stop
//! its children, remove its temporaries and die by the same signal.

use crate::support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Processes still alive (zombies count as gone: whoever adopted them reaps).
fn alive(pids: &[i32]) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
        })
        .collect()
}

fn read_pids(marker: &std::path::Path) -> Vec<i32> {
    fs::read_to_string(marker).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Kills whatever the test started, should it fail half-way.
struct Reaper {
    child: Child,
    marker: std::path::PathBuf,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in alive(&read_pids(&self.marker)) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn sigterm_during_backends_stops_cleanly() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();

    // Every backend runs a stand-in compiler that records its pid and hangs
    // (named clang-22 in case kdthin-ld looks at the name). The .cmd files
    // name it by absolute path, as they do with CC=/usr/bin/clang-22.
    let slow = t.scratch().join("slowbin/clang-22");
    let marker = t.scratch().join("backend-pids");
    fs::create_dir_all(slow.parent().unwrap()).unwrap();
    fs::write(&slow, format!("#!/bin/sh\necho $$ >> '{}'\nexec sleep 60\n", marker.display())).unwrap();
    fs::set_permissions(&slow, fs::Permissions::from_mode(0o755)).unwrap();
    for obj in VMLINUX_BITCODE {
        let cmd = Tree::cmd_file(obj);
        t.edit(&cmd, |s| s.replacen(" := clang-22 ", &format!(" := {} ", slow.display()), 1));
    }

    let before = t.snapshot();
    let argv = t.link_argv("vmlinux.o", Linker::Kdthin);
    let log = t.scratch().join("kdthin-ld.stderr");
    let mut cmd = Command::new(&argv[0]);
    clean_env(&mut cmd)
        .current_dir(t.root())
        .args(&argv[1..])
        .env("KDTHIN_JOBS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap());
    eprintln!("$ {} 2>{}", command_line(&cmd), log.display());
    let child = cmd.spawn().expect("start kdthin-ld");
    let mut reaper = Reaper { child, marker: marker.clone() };
    let stderr = || fs::read_to_string(&log).unwrap_or_default();

    // Wait for the first backend.
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_pids(&marker).is_empty() {
        if let Some(status) = reaper.child.try_wait().unwrap() {
            panic!("kdthin-ld ended ({}) before any backend started\n{}", describe_status(status), stderr());
        }
        assert!(Instant::now() < deadline, "no backend started within 30 s\n{}", stderr());
        std::thread::sleep(Duration::from_millis(10));
    }

    unsafe { libc::kill(reaper.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = reaper.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "kdthin-ld still running 10 s after SIGTERM\n{}", stderr());
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "kdthin-ld should die by SIGTERM, got {}\n{}",
        describe_status(status),
        stderr()
    );

    let backends = read_pids(&marker);
    assert_eq!(backends.len(), 1, "KDTHIN_JOBS=1 but {} backends started", backends.len());
    let deadline = Instant::now() + Duration::from_secs(2);
    while !alive(&backends).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(alive(&backends), Vec::<i32>::new(), "backends outlived kdthin-ld");
    assert!(!t.exists("vmlinux.o"), "vmlinux.o left behind");
    t.snapshot().assert_only_changes(&before, is_native_object);
    assert_no_litter(&t);
}

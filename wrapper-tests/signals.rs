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

/// Pids of processes (not zombies) whose working directory is `dir`:
/// every child kdthin-ld starts runs in the tree it links, and nothing
/// else does, so this finds its survivors whoever adopted them.
fn running_in(dir: &std::path::Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(rd) = fs::read_dir("/proc") else { return vec![] };
    let pids: Vec<i32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&pid| pid != me && fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == dir))
        .collect();
    alive(&pids)
}

/// `what` of each process in `pids`, for failure messages.
fn cmdlines(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| {
            let status = fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
            let sig: Vec<&str> = status
                .lines()
                .filter(|l| {
                    l.starts_with("Sig")
                        || l.starts_with("ShdPnd")
                        || l.starts_with("PPid")
                        || l.starts_with("State")
                        || l.starts_with("Threads")
                })
                .collect();
            let cmdline = fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default().replace('\0', " ");
            let wchan = fs::read_to_string(format!("/proc/{p}/wchan")).unwrap_or_default();
            let exe = fs::read_link(format!("/proc/{p}/exe")).unwrap_or_default();
            format!("{p}: {cmdline} exe {} wchan {wchan} ({})\n", exe.display(), sig.join(", "))
        })
        .collect()
}

/// Waits up to `limit` for every process running in `dir` to end.
fn assert_none_left_in(dir: &std::path::Path, limit: Duration, context: &str) {
    let deadline = Instant::now() + limit;
    loop {
        let left = running_in(dir);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for &pid in &left {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            panic!("{} children outlived kdthin-ld by {limit:?} ({context}):\n{}", left.len(), cmdlines(&left));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts a link of vmlinux.o in `t` with `envs`, stdout and stderr to
/// files in the scratch directory.
fn start_link(t: &Tree, envs: &[(&str, &std::ffi::OsStr)], log: &std::path::Path) -> Child {
    let argv = t.link_argv("vmlinux.o", Linker::Kdthin);
    let mut cmd = Command::new(&argv[0]);
    clean_env(&mut cmd)
        .current_dir(t.root())
        .args(&argv[1..])
        .env("KDTHIN_TMPDIR", t.index_tmp())
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap());
    cmd.spawn().expect("start kdthin-ld")
}

fn wait_for_pid(marker: &std::path::Path, child: &mut Child, what: &str, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_pids(marker).is_empty() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("kdthin-ld ended ({}) before {what}\n{}", describe_status(status), fs::read_to_string(log).unwrap());
        }
        assert!(Instant::now() < deadline, "no {what} within 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sigkill(child: &mut Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{}", describe_status(status));
}

/// SIGKILL leaves no handler to stop the children: the parent-death
/// signal must. A hanging backend (a stand-in that execs sleep, so the
/// signal reaches the very process) must end, and a final ld.lld that had
/// not written `-o` yet must never write it. (Caught: children spawned
/// without PR_SET_PDEATHSIG, or with it set in a thread that exits.)
#[test]
fn sigkill_takes_the_children_along_and_no_output_appears_later() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    let bin = t.scratch().join("stand-ins");
    fs::create_dir_all(&bin).unwrap();
    let script = |name: &str, text: String| {
        let p = bin.join(name);
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    };

    // 1. During the backends.
    let marker = t.scratch().join("backend-pids");
    let slow = script("clang-22", format!("#!/bin/sh\necho $$ >> '{}'\nexec sleep 60\n", marker.display()));
    for obj in VMLINUX_BITCODE {
        t.edit(&Tree::cmd_file(obj), |s| s.replacen(" := clang-22 ", &format!(" := {} ", slow.display()), 1));
    }
    let log = t.scratch().join("kdthin-ld.stderr");
    let child = start_link(&t, &[("KDTHIN_JOBS", "2".as_ref())], &log);
    let mut reaper = Reaper { child, marker: marker.clone() };
    wait_for_pid(&marker, &mut reaper.child, "a backend started", &log);
    sigkill(&mut reaper.child);
    assert_none_left_in(t.root(), Duration::from_secs(5), "backends");
    for obj in VMLINUX_BITCODE {
        t.edit(&Tree::cmd_file(obj), |s| s.replacen(&format!(" := {} ", slow.display()), " := clang-22 ", 1));
    }

    // 2. During the final link: real backends, then an ld.lld that waits
    // 2 s before it links. Only the final link waits; the thin-link and
    // --version go straight to ld.lld.
    let marker = t.scratch().join("final-pids");
    let ld = script(
        "ld.lld",
        format!(
            "#!/bin/sh\ncase \" $* \" in *' --version '*|*thinlto-index-only*) exec {LLD} \"$@\";; esac\n\
             echo $$ >> '{}'\nsleep 2\nexec {LLD} \"$@\"\n",
            marker.display()
        ),
    );
    let child = start_link(&t, &[("KDTHIN_LD", ld.as_os_str())], &log);
    let mut reaper = Reaper { child, marker: marker.clone() };
    wait_for_pid(&marker, &mut reaper.child, "the final link started", &log);
    sigkill(&mut reaper.child);
    assert_none_left_in(t.root(), Duration::from_secs(5), "final link");
    std::thread::sleep(Duration::from_secs(3));
    assert!(!t.exists("vmlinux.o"), "vmlinux.o written after kdthin-ld was killed");
}

/// A tiny deterministic generator (xorshift), seeded and printed, so a
/// failing sequence of delays can be replayed with KDTHIN_TEST_SEED.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("KDTHIN_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        eprintln!("KDTHIN_TEST_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Files under `dir` (recursively) whose name starts with `prefix`.
fn find_named(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    let mut found = vec![];
    let Ok(rd) = fs::read_dir(dir) else { return found };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with(prefix) {
            found.push(p.display().to_string());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(find_named(&p, prefix));
        }
    }
    found
}

/// `sig` at random points of real links (early ones weighted: the first
/// tens of ms hold the directory creation and the thin-link's start),
/// with the backend cache and the whole-link cache on: afterwards no
/// child runs, and for a handled signal nothing of the link is left
/// (work, index, cache temporaries) and no `-o`; a link the signal
/// missed produced the right output.
fn signal_at_random_points(sig: libc::c_int, iterations: usize) {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    let log = t.scratch().join("kdthin-ld.stderr");
    let cache = t.scratch().join("cache");
    // The reference output, and a link's typical duration.
    let started = Instant::now();
    let ran = t.link("vmlinux.o", Linker::Kdthin, &[]).ok();
    let full_ms = started.elapsed().as_millis() as u64 + 1;
    let reference = t.read("vmlinux.o");
    let natives = t.snapshot();
    let mut rng = Rng::from_env();
    let handled = sig != libc::SIGKILL;
    for i in 0..iterations {
        let _ = fs::remove_file(t.path("vmlinux.o"));
        if i % 3 == 0 {
            let _ = fs::remove_dir_all(cache.join("v1"));
        }
        let link_cache = if i % 2 == 0 { "on" } else { "off" };
        let envs = [
            ("KDTHIN_CACHE", "on".as_ref()),
            ("KDTHIN_CACHE_DIR", cache.as_os_str()),
            ("KDTHIN_LINK_CACHE", link_cache.as_ref()),
        ];
        let delay = if i % 2 == 0 { rng.below(60) } else { rng.below(full_ms) };
        let context = format!("iteration {i}, {delay} ms, whole-link cache {link_cache}");
        let mut child = start_link(&t, &envs, &log);
        std::thread::sleep(Duration::from_millis(delay));
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait().unwrap();
        let stderr = fs::read_to_string(&log).unwrap_or_default();
        assert!(
            status.success() || status.signal() == Some(sig),
            "{context}: kdthin-ld {}\n{stderr}",
            describe_status(status)
        );
        assert_none_left_in(t.root(), Duration::from_secs(5), &context);
        let present = t.exists("vmlinux.o");
        if status.success() {
            assert!(t.read("vmlinux.o") == reference, "{context}: wrong vmlinux.o\n{stderr}");
        } else if present {
            // The final link had renamed it into place when the signal
            // came: whole, or not there.
            assert!(t.read("vmlinux.o") == reference, "{context}: partial vmlinux.o after the signal");
        }
        if !handled {
            // Killed outright, kdthin-ld cleans nothing up; its children
            // must still not write anything more.
            std::thread::sleep(Duration::from_millis(300));
            assert_eq!(t.exists("vmlinux.o"), present, "{context}: vmlinux.o appeared after SIGKILL");
            let _ = fs::remove_dir_all(t.index_tmp());
            for d in find_named(t.root(), ".tmp_kdthin") {
                let _ = fs::remove_dir_all(d);
            }
            continue;
        }
        let left = [
            find_named(&t.index_tmp(), "kdthin"),
            find_named(t.root(), ".tmp_kdthin"),
            find_named(t.root(), ".tmp."),
            find_named(&cache, ".tmp"),
        ]
        .concat();
        assert!(left.is_empty(), "{context}: left behind: {left:?}\n{stderr}");
    }
    // Inputs untouched (natives may have been rewritten, with the same
    // bytes), and the next link is right.
    t.snapshot().assert_only_changes(&natives, |p| is_native_object(p) || p.ends_with("vmlinux.o"));
    let _ = fs::remove_file(t.path("vmlinux.o"));
    let envs = [("KDTHIN_CACHE", "on".as_ref()), ("KDTHIN_CACHE_DIR", cache.as_os_str())];
    t.link("vmlinux.o", Linker::Kdthin, &envs).ok();
    assert!(t.read("vmlinux.o") == reference, "the link after the signals differs\n{}", ran.report());
}

#[test]
fn sigterm_at_random_points_leaves_nothing_behind() {
    signal_at_random_points(libc::SIGTERM, 30);
}

#[test]
fn sigint_at_random_points_leaves_nothing_behind() {
    signal_at_random_points(libc::SIGINT, 30);
}

#[test]
fn sigkill_at_random_points_leaves_no_child_and_no_partial_output() {
    signal_at_random_points(libc::SIGKILL, 30);
}

//! Remote execution (`KDTHIN_REMOTE`) against a real REAPI server on
//! 127.0.0.1: buildbox-casd, executing actions through buildbox-run in a
//! bubblewrap sandbox that sees the host's /usr (the compiler) and the
//! action's input root, nothing else.
//!
//! Each test starts its own server on a free loopback port and kills it
//! (its whole process group) when the test ends, however it ends. The
//! binaries come from `.ci/reapi-server.sh setup`, in
//! `KDTHIN_TEST_BUILDBOX_DIR` (default `${XDG_CACHE_HOME:-~/.cache}/kdthin/buildbox`).
//! Without them, or without a working `bwrap`, the tests say so and pass;
//! with KDTHIN_REQUIRE_TOOLS=1 that is a failure.
//!
//! Where each backend ran is read from `KDTHIN_REMOTE_LOG` (one line per
//! backend: `remote`, `remote-cache` or `local`, then its label).

use std::ffi::OsStr;
use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Backends of the vmlinux.o link (lib/unused.o is not pulled in).
const VMLINUX_BACKENDS: usize = 7;

fn buildbox_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KDTHIN_TEST_BUILDBOX_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/nonexistent"));
    cache.join("kdthin/buildbox")
}

/// A running buildbox-casd with local execution.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Server {
    /// None (after printing why) when it cannot run here.
    fn start() -> Option<Server> {
        let skip = |why: String| {
            if std::env::var_os("KDTHIN_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
                panic!("{why} (and KDTHIN_REQUIRE_TOOLS=1)");
            }
            let _ = writeln!(std::io::stderr(), "SKIP {}: {why}", test_name());
            None
        };
        let bin = buildbox_dir();
        let (casd, runner) = (bin.join("buildbox-casd"), bin.join("buildbox-run"));
        if !casd.is_file() || !runner.is_file() {
            return skip(format!(
                "no buildbox-casd/buildbox-run in {} (run .ci/reapi-server.sh setup, or set KDTHIN_TEST_BUILDBOX_DIR)",
                bin.display()
            ));
        }
        let bwrap_ok = Command::new("bwrap")
            .args(["--ro-bind", "/usr", "/usr", "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/lib", "/lib"])
            .arg("/usr/bin/true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !bwrap_ok {
            return skip("bwrap (bubblewrap) is missing or cannot create a sandbox here".into());
        }
        let dir = tempfile::Builder::new().prefix("reapi-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let log = dir.path().join("casd.log");
        // A port the kernel just gave out and we released: free unless
        // something grabs it in between, which the wait below would show.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new(&casd);
        cmd.arg(format!("--bind=127.0.0.1:{port}"))
            .arg(format!("--buildbox-run={}", runner.display()))
            .args([
                "--runner-arg=--ro-bind-mount=/usr:/usr",
                "--runner-arg=--ro-bind-mount=/usr/bin:/bin",
                "--runner-arg=--ro-bind-mount=/usr/lib:/lib",
                "--runner-arg=--ro-bind-mount=/usr/lib64:/lib64",
                "--jobs=2",
                "--cache-failures=false",
            ])
            .arg(dir.path().join("cas"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            // Its own process group: stopping the server also stops the
            // runners and compilers it started.
            .process_group(0);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return skip(format!("cannot start {}: {e}", casd.display())),
        };
        let mut server = Server { child, port, _dir: dir, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Some(server);
            }
            if let Ok(Some(st)) = server.child.try_wait() {
                let log = std::fs::read_to_string(&server.log).unwrap_or_default();
                return skip(format!("buildbox-casd exited at start ({st}):\n{log}"));
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&server.log).unwrap_or_default();
                return skip(format!("buildbox-casd did not listen on 127.0.0.1:{port} within 20s:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.port)
    }

    /// SIGKILL to the server's process group (only ever the one we made).
    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on the group we created for this child.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The environment of a remote link, logging where each backend ran.
struct Remote {
    url: String,
    log: PathBuf,
}

impl Remote {
    fn new(server: &Server, tree: &Tree) -> Remote {
        Remote { url: server.url(), log: tree.scratch().join("remote.log") }
    }

    fn envs(&self) -> Vec<(&'static str, &OsStr)> {
        vec![("KDTHIN_REMOTE", OsStr::new(&self.url)), ("KDTHIN_REMOTE_LOG", self.log.as_os_str())]
    }

    /// Where each backend ran since the last call: (`remote`, label).
    fn take(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        text.lines()
            .map(|l| {
                let mut f = l.split('\t');
                (f.next().unwrap_or("").to_string(), f.next().unwrap_or("").to_string())
            })
            .collect()
    }
}

fn count(lines: &[(String, String)], ran_on: &str) -> usize {
    lines.iter().filter(|(r, _)| r == ran_on).count()
}

#[test]
fn remote_link_is_byte_identical_and_a_second_link_hits_the_action_cache() {
    require_toolchain!();
    let Some(server) = Server::start() else {
        return;
    };
    // The reference: kdthin-ld's local backends.
    let t = Tree::build(CmdFormat::Savedcmd, Linker::Kdthin);
    let local = t.read("vmlinux.o");
    let remote = Remote::new(&server, &t);

    t.remove("vmlinux.o");
    let ran = t.link("vmlinux.o", Linker::Kdthin, &remote.envs()).ok();
    let log = remote.take();
    assert_eq!(count(&log, "remote"), VMLINUX_BACKENDS, "{log:?}\n{}", ran.report());
    assert!(!ran.stderr.contains("falling back"), "{}", ran.report());
    assert!(t.read("vmlinux.o") == local, "vmlinux.o from remote backends differs from the local one");

    // Again: every backend from the action cache, same bytes.
    t.remove("vmlinux.o");
    let ran = t.link("vmlinux.o", Linker::Kdthin, &remote.envs()).ok();
    let log = remote.take();
    assert_eq!(count(&log, "remote-cache"), VMLINUX_BACKENDS, "{log:?}\n{}", ran.report());
    assert!(t.read("vmlinux.o") == local, "vmlinux.o from the action cache differs from the local one");

    // The executable works too.
    t.remove("prog");
    t.link("prog", Linker::Kdthin, &remote.envs()).ok();
    assert!(remote.take().iter().all(|(r, _)| r.starts_with("remote")));
    assert_eq!(t.run_program("prog"), PROG_OUTPUT);
    assert_no_litter(&t);
}

#[test]
fn remote_compile_error_is_a_compile_error() {
    require_toolchain!();
    let Some(server) = Server::start() else {
        return;
    };
    let t = Tree::build(CmdFormat::Savedcmd, Linker::Lld);
    let remote = Remote::new(&server, &t);
    let mut envs = remote.envs();
    // Edits the backends' command line (and is passed to the worker).
    envs.push(("CCC_OVERRIDE_OPTIONS", OsStr::new("+-mllvm +-kdthin-no-such-option")));
    let ran = t.link("vmlinux.o", Linker::Kdthin, &envs).failed();
    ran.stderr_contains("on the remote worker").stderr_contains("kdthin-no-such-option");
    assert!(!ran.stderr.contains("falling back"), "{}", ran.report());
    let log = remote.take();
    assert!(count(&log, "remote") >= 1, "{log:?}");
    assert_eq!(count(&log, "local"), 0, "a compile error must not be retried locally: {log:?}");
}

#[test]
fn killing_the_server_mid_link_falls_back_to_local() {
    require_toolchain!();
    let Some(mut server) = Server::start() else {
        return;
    };
    let t = Tree::build(CmdFormat::Savedcmd, Linker::Kdthin);
    let local = t.read("vmlinux.o");
    let remote = Remote::new(&server, &t);
    t.remove("vmlinux.o");

    // One backend at a time, so that most are still to come when the
    // first has finished remotely and the server dies.
    let argv = t.link_argv("vmlinux.o", Linker::Kdthin);
    let mut cmd = Command::new(&argv[0]);
    clean_env(&mut cmd).current_dir(t.root()).args(&argv[1..]).env("KDTHIN_REMOTE_JOBS", "1");
    for (k, v) in remote.envs() {
        cmd.env(k, v);
    }
    let cmdline = command_line(&cmd);
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&remote.log).unwrap_or_default().lines().count() == 0 {
        assert!(Instant::now() < deadline, "no backend finished remotely within 60s");
        std::thread::sleep(Duration::from_millis(2));
    }
    server.kill();
    let out = child.wait_with_output().unwrap();
    let ran = Ran::from_output(cmdline, out);
    eprintln!("{}", ran.report());
    let ran = ran.ok();
    let log = remote.take();
    assert_eq!(log.len(), VMLINUX_BACKENDS, "{log:?}");
    assert!(count(&log, "remote") >= 1, "{log:?}");
    assert!(count(&log, "local") >= 1, "the server was killed after the first backend: {log:?}");
    assert_eq!(ran.stderr.matches("falling back to local").count(), 1, "one warning per link\n{}", ran.report());
    assert!(t.read("vmlinux.o") == local, "vmlinux.o after local fallback differs");
    assert_no_litter(&t);
}

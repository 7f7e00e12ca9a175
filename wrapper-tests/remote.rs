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
//!
//! `grpcs://`: buildbox-casd only listens without TLS, so the TLS tests put
//! a TLS front ([`TlsFront`], rustls in the test process: ALPN h2, a server
//! certificate for 127.0.0.1, client certificates required or not) before
//! it, with a throw-away CA made by `openssl` ([`Pki`]) in a temp dir.

use std::ffi::OsStr;
use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Backends of the vmlinux.o link: one per bitcode object it uses (the
/// fixture's lib/unused.o is not pulled in).
fn vmlinux_backends() -> usize {
    VMLINUX_BITCODE.len()
}

/// The vmlinux.o link's LTO line says all its backends ran, `remote` of
/// them remotely, none from any cache.
#[track_caller]
fn assert_ran_all(ran: &Ran, remote: usize) {
    let lto = ran.lto_line("vmlinux.o");
    let n = vmlinux_backends();
    assert_eq!((lto.modules, lto.cached, lto.compiled, lto.remote), (n, 0, n, remote), "{}", ran.report());
}

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

/// None, after saying why the test is skipped (a failure with
/// KDTHIN_REQUIRE_TOOLS=1).
fn skip<T>(why: String) -> Option<T> {
    if std::env::var_os("KDTHIN_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("{why} (and KDTHIN_REQUIRE_TOOLS=1)");
    }
    let _ = writeln!(std::io::stderr(), "SKIP {}: {why}", test_name());
    None
}

impl Server {
    /// None (after printing why) when it cannot run here.
    fn start() -> Option<Server> {
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
    /// `XDG_RUNTIME_DIR`: where "this endpoint is down" is shared with
    /// later links; the test's own, not the developer's.
    runtime: PathBuf,
}

impl Remote {
    fn new(server: &Server, tree: &Tree) -> Remote {
        Remote::at(server.url(), tree)
    }

    fn at(url: String, tree: &Tree) -> Remote {
        let runtime = tree.scratch().join("runtime");
        std::fs::create_dir_all(&runtime).unwrap();
        Remote { url, log: tree.scratch().join("remote.log"), runtime }
    }

    fn envs(&self) -> Vec<(&'static str, &OsStr)> {
        vec![
            ("KDTHIN_REMOTE", OsStr::new(&self.url)),
            ("KDTHIN_REMOTE_LOG", self.log.as_os_str()),
            ("XDG_RUNTIME_DIR", self.runtime.as_os_str()),
        ]
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
    assert_eq!(count(&log, "remote"), vmlinux_backends(), "{log:?}\n{}", ran.report());
    assert_ran_all(&ran, vmlinux_backends());
    assert!(!ran.stderr.contains("falling back"), "{}", ran.report());
    assert!(t.read("vmlinux.o") == local, "vmlinux.o from remote backends differs from the local one");

    // Again: every backend from the action cache, same bytes.
    t.remove("vmlinux.o");
    let ran = t.link("vmlinux.o", Linker::Kdthin, &remote.envs()).ok();
    let log = remote.take();
    assert_eq!(count(&log, "remote-cache"), vmlinux_backends(), "{log:?}\n{}", ran.report());
    let lto = ran.lto_line("vmlinux.o");
    assert_eq!((lto.cached, lto.compiled), (vmlinux_backends(), 0), "{}", ran.report());
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
    assert_eq!(log.len(), vmlinux_backends(), "{log:?}");
    assert_ran_all(&ran, count(&log, "remote"));
    assert!(count(&log, "remote") >= 1, "{log:?}");
    assert!(count(&log, "local") >= 1, "the server was killed after the first backend: {log:?}");
    assert_eq!(ran.stderr.matches("falling back to local").count(), 1, "one warning per link\n{}", ran.report());
    assert!(t.read("vmlinux.o") == local, "vmlinux.o after local fallback differs");
    assert_no_litter(&t);
}

// ---- TLS (grpcs://) ----

/// A throw-away CA and the certificates it signed (P-256 keys, valid for
/// two days): the server's, for 127.0.0.1 and localhost, and a client's;
/// and another CA that signed nothing. Made by `openssl` in a temp dir that
/// goes with it.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    ca_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    /// None (after printing why) without a working `openssl`.
    fn make() -> Option<Pki> {
        let dir = tempfile::Builder::new().prefix("pki-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let d = dir.path();
        let openssl = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run openssl: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("openssl {} failed:\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
            }
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let made = (|| {
            for name in ["ca", "other-ca"] {
                let (subj, key, pem) =
                    (format!("/CN=kdthin-ld test {name}"), format!("{name}.key"), format!("{name}.pem"));
                let mut ca = vec!["req", "-x509", "-new", "-days", "2", "-subj", &subj, "-keyout", &key, "-out", &pem];
                ca.extend(ec);
                ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
                ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
                openssl(&ca)?;
            }
            for (name, cn, usage, extra) in [
                ("server", "localhost", "serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"),
                ("client", "kdthin-ld test client", "clientAuth", ""),
            ] {
                let ext = format!(
                    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n{extra}"
                );
                std::fs::write(d.join(format!("{name}.ext")), ext).unwrap();
                let (key, csr, pem, ext) =
                    (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
                let subj = format!("/CN={cn}");
                let mut req = vec!["req", "-new", "-subj", &subj, "-keyout", &key, "-out", &csr];
                req.extend(ec);
                openssl(&req)?;
                let serial = if name == "server" { "2" } else { "3" };
                let sign = format!(
                    "x509 -req -in {csr} -CA ca.pem -CAkey ca.key -set_serial {serial} -days 2 -extfile {ext} -out {pem}"
                );
                openssl(&sign.split(' ').collect::<Vec<_>>())?;
            }
            Ok::<_, String>(())
        })();
        if let Err(why) = made {
            return skip(why);
        }
        Some(Pki {
            ca: d.join("ca.pem"),
            other_ca: d.join("other-ca.pem"),
            ca_key: d.join("ca.key"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client.key"),
            _dir: dir,
        })
    }
}

/// TLS on 127.0.0.1 in front of a plaintext port (the test server): each
/// connection's handshake (ALPN h2, and with `client_auth` a client
/// certificate signed by the test CA), then its bytes both ways. Runs on
/// its own runtime in this process; stopped when dropped.
struct TlsFront {
    port: u16,
    /// Handshakes that succeeded.
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    rt: Option<tokio::runtime::Runtime>,
}

impl TlsFront {
    fn start(pki: &Pki, upstream: u16, client_auth: bool) -> TlsFront {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls::{self, server::WebPkiClientVerifier, RootCertStore, ServerConfig};

        let pem = |p: &Path| std::fs::read(p).unwrap();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&pem(&pki.server_cert)).collect::<Result<_, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_slice(&pem(&pki.server_key)).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder =
            ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
        let builder = if client_auth {
            let mut roots = RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(&pem(&pki.ca)).unwrap()).unwrap();
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap(),
            )
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, count) = (acceptor.clone(), count.clone());
                tokio::spawn(async move {
                    // A failed handshake: the client has had its alert.
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    count.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut up) = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, upstream)).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
        TlsFront { port, accepted, rt: Some(rt) }
    }

    fn url(&self) -> String {
        format!("grpcs://127.0.0.1:{}", self.port)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[test]
fn remote_link_over_tls_is_byte_identical() {
    require_toolchain!();
    let Some(pki) = Pki::make() else {
        return;
    };
    let Some(server) = Server::start() else {
        return;
    };
    let front = TlsFront::start(&pki, server.port, false);
    let t = Tree::build(CmdFormat::Savedcmd, Linker::Kdthin);
    let local = t.read("vmlinux.o");
    let remote = Remote::at(front.url(), &t);
    let mut envs = remote.envs();
    envs.push(("KDTHIN_REMOTE_CA", pki.ca.as_os_str()));

    t.remove("vmlinux.o");
    let ran = t.link("vmlinux.o", Linker::Kdthin, &envs).ok();
    let log = remote.take();
    assert_eq!(count(&log, "remote"), vmlinux_backends(), "{log:?}\n{}", ran.report());
    assert!(!ran.stderr.contains("warning"), "{}", ran.report());
    // The link's summary line counts the backends run remotely.
    assert_ran_all(&ran, vmlinux_backends());
    assert!(front.accepted() >= 1, "no TLS connection reached the front");
    assert!(t.read("vmlinux.o") == local, "vmlinux.o from remote backends over TLS differs from the local one");
    assert_no_litter(&t);
}

#[test]
fn remote_tls_with_a_client_certificate() {
    require_toolchain!();
    let Some(pki) = Pki::make() else {
        return;
    };
    let Some(server) = Server::start() else {
        return;
    };
    // This front turns away clients without a certificate from the test CA.
    let front = TlsFront::start(&pki, server.port, true);
    let t = Tree::build(CmdFormat::Savedcmd, Linker::Kdthin);
    let local = t.read("vmlinux.o");
    let remote = Remote::at(front.url(), &t);
    let mut envs = remote.envs();
    envs.push(("KDTHIN_REMOTE_CA", pki.ca.as_os_str()));

    // Without one: refused, so every backend runs locally, one warning.
    t.remove("vmlinux.o");
    let ran = t.link("vmlinux.o", Linker::Kdthin, &envs).ok();
    let log = remote.take();
    assert_eq!(count(&log, "local"), vmlinux_backends(), "{log:?}\n{}", ran.report());
    assert_ran_all(&ran, 0);
    assert_eq!(ran.stderr.matches("falling back to local").count(), 1, "{}", ran.report());
    assert!(t.read("vmlinux.o") == local, "vmlinux.o after the fallback differs from the local one");

    // With it: remote.
    envs.push(("KDTHIN_REMOTE_CLIENT_CERT", pki.client_cert.as_os_str()));
    envs.push(("KDTHIN_REMOTE_CLIENT_KEY", pki.client_key.as_os_str()));
    t.remove("vmlinux.o");
    let ran = t.link("vmlinux.o", Linker::Kdthin, &envs).ok();
    let log = remote.take();
    assert_eq!(count(&log, "remote"), vmlinux_backends(), "{log:?}\n{}", ran.report());
    assert_ran_all(&ran, vmlinux_backends());
    assert!(!ran.stderr.contains("warning"), "{}", ran.report());
    assert!(t.read("vmlinux.o") == local, "vmlinux.o from remote backends over mutual TLS differs");
    assert_no_litter(&t);
}

#[test]
fn remote_tls_server_not_trusted_falls_back_with_a_certificate_warning() {
    require_toolchain!();
    let Some(pki) = Pki::make() else {
        return;
    };
    // The handshake fails before anything is forwarded: no REAPI server
    // is needed behind the front (a port nobody listens on).
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
    let front = TlsFront::start(&pki, closed, false);
    let t = Tree::build(CmdFormat::Savedcmd, Linker::Kdthin);
    let local = t.read("vmlinux.o");
    let remote = Remote::at(front.url(), &t);

    // No KDTHIN_REMOTE_CA, and a system store (as SSL_CERT_FILE names it)
    // that holds another CA: the same on every machine, with or without
    // ca-certificates.
    t.remove("vmlinux.o");
    let mut envs = remote.envs();
    envs.push(("SSL_CERT_FILE", pki.other_ca.as_os_str()));
    let ran = t.link("vmlinux.o", Linker::Kdthin, &envs).ok();
    let log = remote.take();
    assert_eq!(count(&log, "local"), vmlinux_backends(), "{log:?}\n{}", ran.report());
    assert_ran_all(&ran, 0);
    assert_eq!(front.accepted(), 0, "a TLS handshake succeeded without the test CA");
    let warnings: Vec<&str> = ran.stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "one warning per link\n{}", ran.report());
    assert!(warnings[0].contains(&front.url()), "{}", ran.report());
    assert!(warnings[0].contains("falling back to local"), "{}", ran.report());
    assert!(warnings[0].to_lowercase().contains("certificate"), "the warning should say why: {}", warnings[0]);
    assert!(t.read("vmlinux.o") == local, "vmlinux.o after the fallback differs from the local one");
    assert_no_litter(&t);
}

#[test]
fn bad_tls_settings_stop_kdthin_ld_before_it_starts() {
    require_toolchain!();
    let Some(pki) = Pki::make() else {
        return;
    };
    // The objects built with ld.lld, vmlinux.o removed: the link through
    // kdthin-ld has bitcode, and must stop before doing any work.
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make_with(Linker::Lld, &["vmlinux.o"], &[]).ok();
    t.remove("vmlinux.o");
    let argv = t.link_argv("vmlinux.o", Linker::Kdthin);
    let scratch = t.scratch();
    let missing = scratch.join("no-such-ca.pem");
    let not_pem = scratch.join("not-pem.txt");
    std::fs::write(&not_pem, "just some text\n").unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let tls = "grpcs://127.0.0.1:1".to_string();
    let cases: Vec<(Vec<(&str, String)>, String)> = vec![
        (vec![("KDTHIN_REMOTE_CA", p(&missing))], format!("KDTHIN_REMOTE_CA={}: cannot read", p(&missing))),
        (vec![("KDTHIN_REMOTE_CA", p(&not_pem))], format!("KDTHIN_REMOTE_CA={}: not a PEM certificate", p(&not_pem))),
        (
            vec![("KDTHIN_REMOTE_CLIENT_CERT", p(&pki.client_cert))],
            "KDTHIN_REMOTE_CLIENT_CERT is set but KDTHIN_REMOTE_CLIENT_KEY is not".into(),
        ),
        (
            vec![("KDTHIN_REMOTE_CLIENT_CERT", p(&pki.client_cert)), ("KDTHIN_REMOTE_CLIENT_KEY", p(&pki.client_cert))],
            format!("KDTHIN_REMOTE_CLIENT_KEY={}: not a PEM private key", p(&pki.client_cert)),
        ),
        (
            vec![("KDTHIN_REMOTE_CLIENT_CERT", p(&pki.client_cert)), ("KDTHIN_REMOTE_CLIENT_KEY", p(&pki.ca_key))],
            format!("KDTHIN_REMOTE_CLIENT_KEY={} is not the private key of KDTHIN_REMOTE_CLIENT_CERT", p(&pki.ca_key)),
        ),
        (
            vec![("KDTHIN_REMOTE", "grpc://127.0.0.1:1".into()), ("KDTHIN_REMOTE_CA", p(&pki.ca))],
            "KDTHIN_REMOTE_CA is set, but KDTHIN_REMOTE=grpc://127.0.0.1:1 is not TLS".into(),
        ),
    ];
    for (vars, want) in &cases {
        let mut envs: Vec<(&str, &OsStr)> = vec![("KDTHIN_REMOTE", OsStr::new(&tls))];
        for (k, v) in vars {
            envs.retain(|(ek, _)| ek != k);
            envs.push((k, OsStr::new(v)));
        }
        let ran = t.run_linker(&argv, &envs).failed();
        assert!(ran.stderr.starts_with("kdthin-ld: error: "), "{}", ran.report());
        assert!(ran.stderr.contains(want.as_str()), "want {want:?}\n{}", ran.report());
        assert_eq!(ran.stderr.lines().count(), 1, "only the error, nothing from ld.lld\n{}", ran.report());
        assert!(!t.exists("vmlinux.o"));
        assert_no_litter(&t);

        // `kdthin distribute` (ld.lld's DTLTO distributor) checks the same.
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kdthin"));
        clean_env(&mut cmd).current_dir(t.root()).args(["distribute", "no-such-jobs.json"]);
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        let ran = run(&mut cmd).failed();
        assert!(ran.stderr.contains(want.as_str()), "want {want:?}\n{}", ran.report());
    }
    // Remote execution off: the TLS variables mean nothing, and are not read.
    let version = [Linker::Kdthin.program(), "--version".into()];
    let ran = t.run_linker(&version, &[("KDTHIN_REMOTE_CA", missing.as_os_str())]).ok();
    assert!(ran.stdout.contains("LLD"), "{}", ran.report());
    // Nor by a link without bitcode (probes, --version): it only execs ld.lld.
    let broken = [("KDTHIN_REMOTE", OsStr::new(&tls)), ("KDTHIN_REMOTE_CA", missing.as_os_str())];
    let ran = t.run_linker(&version, &broken).ok();
    assert!(ran.stdout.contains("LLD"), "{}", ran.report());
}

/// A server that accepts TCP connections and never answers (a hung
/// process, a proxy with nothing behind it). The first link must give up
/// on it within the first-answer deadline (5 s), not HTTP/2's keep-alive
/// (~50 s), and say so once; a second link of the same build (same
/// runtime directory) must not even connect: the first one's verdict is
/// shared. Another runtime directory knows nothing of it.
#[test]
fn a_server_that_never_answers_costs_one_timeout_per_build() {
    require_toolchain!();
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let url = format!("grpc://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    // Detached: it holds the connections open until the test process ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    let t = Tree::build(CmdFormat::Savedcmd, Linker::Kdthin);
    let local = t.read("vmlinux.o");
    let remote = Remote::at(url.clone(), &t);
    let envs = remote.envs();

    t.remove("vmlinux.o");
    let start = Instant::now();
    let ran = t.link("vmlinux.o", Linker::Kdthin, &envs).ok();
    let took = start.elapsed();
    let log = remote.take();
    assert_eq!(count(&log, "local"), vmlinux_backends(), "{log:?}\n{}", ran.report());
    assert!(accepted.load(Ordering::SeqCst) >= 1, "the link never connected\n{}", ran.report());
    assert!(took < Duration::from_secs(15), "the first link took {took:?} to fall back\n{}", ran.report());
    let warnings: Vec<&str> = ran.stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "one warning per link\n{}", ran.report());
    assert!(warnings[0].contains("no answer in 5s"), "the warning should say why: {}", warnings[0]);
    assert!(t.read("vmlinux.o") == local, "vmlinux.o after the fallback differs from the local one");

    // The same build's next link: no connection, no wait.
    let connections = accepted.load(Ordering::SeqCst);
    t.remove("vmlinux.o");
    let start = Instant::now();
    let ran = t.link("vmlinux.o", Linker::Kdthin, &envs).ok();
    let took = start.elapsed();
    assert_eq!(accepted.load(Ordering::SeqCst), connections, "the second link tried again\n{}", ran.report());
    assert!(took < Duration::from_secs(4), "the second link took {took:?}\n{}", ran.report());
    let log = remote.take();
    assert_eq!(count(&log, "local"), vmlinux_backends(), "{log:?}\n{}", ran.report());
    ran.stderr_contains("in another link").stderr_contains(&url);
    assert!(t.read("vmlinux.o") == local, "vmlinux.o after the shared verdict differs from the local one");

    // A link elsewhere (another runtime directory) tries for itself.
    let elsewhere = t.scratch().join("runtime2");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut envs = remote.envs();
    envs.retain(|(k, _)| *k != "XDG_RUNTIME_DIR");
    envs.push(("XDG_RUNTIME_DIR", elsewhere.as_os_str()));
    t.remove("vmlinux.o");
    let ran = t.link("vmlinux.o", Linker::Kdthin, &envs).ok();
    assert!(accepted.load(Ordering::SeqCst) > connections, "a fresh runtime directory should try\n{}", ran.report());
    remote.take();
    assert_no_litter(&t);
}

use super::*;
use crate::plan::backend::BackendCommand;

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let map: HashMap<String, OsString> = pairs.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
    move |k| map.get(k).cloned()
}

#[test]
fn off_unless_kdthin_remote_is_set() {
    assert_eq!(RemoteSettings::from_vars(vars(&[])), None);
    assert_eq!(RemoteSettings::from_vars(vars(&[("KDTHIN_REMOTE", "")])), None);
}

#[test]
fn settings_are_parsed() {
    let s = RemoteSettings::from_vars(vars(&[
        ("KDTHIN_REMOTE", "grpc://127.0.0.1:8980"),
        ("KDTHIN_REMOTE_INSTANCE", "main"),
        ("KDTHIN_REMOTE_HEADERS", "x-a=1, x-b=two=2"),
        ("KDTHIN_REMOTE_PLATFORM", "OSFamily=linux,container-image=docker://x"),
        ("KDTHIN_REMOTE_JOBS", "50"),
        ("KDTHIN_REMOTE_TOKEN_FILE", "/t"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(s.endpoint, "http://127.0.0.1:8980");
    assert_eq!(s.tls, None);
    assert_eq!(s.instance, "main");
    assert_eq!(s.headers, [("x-a".to_string(), "1".to_string()), ("x-b".to_string(), "two=2".to_string())]);
    assert_eq!(s.platform[1], ("container-image".to_string(), "docker://x".to_string()));
    assert_eq!(s.jobs, 50);
    assert_eq!(s.token_file, Some(PathBuf::from("/t")));
    let d = RemoteSettings::from_vars(vars(&[("KDTHIN_REMOTE", "grpc://build:1")])).unwrap().unwrap();
    assert_eq!(d.jobs, DEFAULT_JOBS);
}

#[test]
fn grpcs_is_tls() {
    let s = RemoteSettings::from_vars(vars(&[("KDTHIN_REMOTE", "grpcs://build.example:443")])).unwrap().unwrap();
    assert_eq!(s.endpoint, "https://build.example:443");
    assert_eq!(s.tls, Some(TlsFiles::default()));
    let s = RemoteSettings::from_vars(vars(&[
        ("KDTHIN_REMOTE", "grpcs://10.0.0.1:8980/"),
        ("KDTHIN_REMOTE_CA", "/ca.pem"),
        ("KDTHIN_REMOTE_CLIENT_CERT", "/me.pem"),
        ("KDTHIN_REMOTE_CLIENT_KEY", "/me.key"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(s.endpoint, "https://10.0.0.1:8980");
    let tls = s.tls.unwrap();
    assert_eq!(tls.ca, Some(PathBuf::from("/ca.pem")));
    assert_eq!(tls.client, Some((PathBuf::from("/me.pem"), PathBuf::from("/me.key"))));
}

#[test]
fn bad_settings_are_errors() {
    for (k, v, want) in [
        ("KDTHIN_REMOTE", "h:1", "grpc://HOST:PORT"),
        ("KDTHIN_REMOTE", "grpcs://h", "grpcs://HOST:PORT"),
        ("KDTHIN_REMOTE_CA", "/ca.pem", "KDTHIN_REMOTE_CA is set, but KDTHIN_REMOTE=grpc://h:1 is not TLS"),
        ("KDTHIN_REMOTE", "grpc://h", "grpc://HOST:PORT"),
        ("KDTHIN_REMOTE", "ftp://h:1", "unknown scheme"),
        ("KDTHIN_REMOTE_JOBS", "0", "positive"),
        ("KDTHIN_REMOTE_PLATFORM", "novalue", "KEY=VALUE"),
    ] {
        let mut env = vec![("KDTHIN_REMOTE", "grpc://h:1")];
        env.retain(|(ek, _)| *ek != k);
        env.push((k, v));
        let e = RemoteSettings::from_vars(vars(&env)).unwrap().unwrap_err();
        assert!(e.contains(want), "{k}={v}: {e}");
    }
}

/// TLS settings that are wrong stop kdthin-ld before it starts: each
/// message names the variable, the file and what is wrong.
#[test]
fn preflight_names_the_file_and_the_problem() {
    let t = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = t.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let text = file("text.pem", "not PEM at all\n");
    // PEM, but the DER inside is no certificate.
    let junk_cert = file("junk.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let broken = file("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");
    let missing = t.path().join("missing.pem").to_str().unwrap().to_string();
    let tls = ("KDTHIN_REMOTE", "grpcs://h:1");
    let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
        (vec![tls, ("KDTHIN_REMOTE_CA", &missing)], format!("KDTHIN_REMOTE_CA={missing}: cannot read: ")),
        (vec![tls, ("KDTHIN_REMOTE_CA", &text)], format!("KDTHIN_REMOTE_CA={text}: not a PEM certificate")),
        (vec![tls, ("KDTHIN_REMOTE_CA", &broken)], format!("KDTHIN_REMOTE_CA={broken}: not a valid PEM file")),
        (
            vec![tls, ("KDTHIN_REMOTE_CA", &junk_cert)],
            format!("KDTHIN_REMOTE_CA={junk_cert}: certificate 1 cannot be used as a CA"),
        ),
        (
            vec![tls, ("KDTHIN_REMOTE_CLIENT_KEY", &text)],
            "KDTHIN_REMOTE_CLIENT_KEY is set but KDTHIN_REMOTE_CLIENT_CERT is not".into(),
        ),
        (
            vec![tls, ("KDTHIN_REMOTE_CLIENT_CERT", &junk_cert), ("KDTHIN_REMOTE_CLIENT_KEY", &missing)],
            format!("KDTHIN_REMOTE_CLIENT_KEY={missing}: cannot read"),
        ),
        (
            vec![tls, ("KDTHIN_REMOTE_CLIENT_CERT", &text), ("KDTHIN_REMOTE_CLIENT_KEY", &junk_cert)],
            format!("KDTHIN_REMOTE_CLIENT_CERT={text}: not a PEM certificate"),
        ),
        (
            vec![tls, ("KDTHIN_REMOTE_CLIENT_CERT", &junk_cert), ("KDTHIN_REMOTE_CLIENT_KEY", &junk_cert)],
            format!("KDTHIN_REMOTE_CLIENT_KEY={junk_cert}: not a PEM private key"),
        ),
        (
            vec![
                ("KDTHIN_REMOTE", "grpc://h:1"),
                ("KDTHIN_REMOTE_CLIENT_CERT", &text),
                ("KDTHIN_REMOTE_CLIENT_KEY", &text),
            ],
            "KDTHIN_REMOTE_CLIENT_CERT and KDTHIN_REMOTE_CLIENT_KEY are set, but KDTHIN_REMOTE=grpc://h:1 is not TLS"
                .into(),
        ),
    ];
    for (env, want) in cases {
        let e = preflight_vars(vars(&env)).unwrap_err();
        assert!(e.starts_with(&want), "{env:?}:\n got {e}\nwant {want}...");
    }
    // Nothing to check: remote execution off, plain grpc://, grpcs://
    // with the system's CAs only. A bad URL is the link's to warn about.
    for env in [
        vec![("KDTHIN_REMOTE_CA", missing.as_str())],
        vec![("KDTHIN_REMOTE", "grpc://h:1")],
        vec![tls],
        vec![("KDTHIN_REMOTE", "ftp://h:1"), ("KDTHIN_REMOTE_CA", &missing)],
    ] {
        assert_eq!(preflight_vars(vars(&env)), Ok(()), "{env:?}");
    }
}

/// Counts local runs; succeeds.
struct FakeLocal(AtomicU64);

impl Executor for FakeLocal {
    fn run(&self, job: &Job) -> Result<JobOutcome, JobError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(JobOutcome { id: job.id, wall: Duration::ZERO, ran_on: "local", stderr: vec![], already_installed: false })
    }
}

#[test]
fn unreachable_server_falls_back_to_local_and_stops_trying() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = tempfile::tempdir().unwrap();
    for f in ["m.o", "idx"] {
        std::fs::write(t.path().join(f), f).unwrap();
    }
    let settings = RemoteSettings::from_vars(vars(&[
        ("KDTHIN_REMOTE", &format!("grpc://127.0.0.1:{port}")),
        // The compiler ("true") is found in the settings' PATH.
        ("PATH", &std::env::var("PATH").unwrap()),
    ]))
    .unwrap()
    .unwrap();
    let local = Arc::new(FakeLocal(AtomicU64::new(0)));
    let scan: IncbinScan = Arc::new(|_| Ok(vec![]));
    let exec = RemoteExecutor::new(settings, t.path().to_path_buf(), local.clone(), Slots::counting(1), scan).unwrap();
    let idx = t.path().join("idx");
    let job = |id| Job {
        command: crate::exec::Command::Backend(BackendCommand {
            compiler: "true".into(),
            index: idx.clone(),
            bitcode: "m.o".into(),
            output: "/out.o".into(),
            ..Default::default()
        }),
        ..Job::plain(id, "m.o", vec![])
    };
    let out = exec.run(&job(0)).unwrap();
    assert_eq!(out.ran_on, "local");
    let out = exec.run(&job(1)).unwrap();
    assert_eq!(out.ran_on, "local");
    assert_eq!(local.0.load(Ordering::SeqCst), 2);
    let s = exec.stats();
    assert_eq!((s.fallbacks, s.executed, s.cache_hits), (2, 0, 0));
    assert!(exec.down.load(Ordering::Relaxed), "connection refused marks the service down");
}

use super::*;

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
    assert_eq!(s.instance, "main");
    assert_eq!(s.headers, [("x-a".to_string(), "1".to_string()), ("x-b".to_string(), "two=2".to_string())]);
    assert_eq!(s.platform[1], ("container-image".to_string(), "docker://x".to_string()));
    assert_eq!(s.jobs, 50);
    assert_eq!(s.token_file, Some(PathBuf::from("/t")));
    let d = RemoteSettings::from_vars(vars(&[("KDTHIN_REMOTE", "grpc://build:1")])).unwrap().unwrap();
    assert_eq!(d.jobs, DEFAULT_JOBS);
}

#[test]
fn bad_settings_are_errors() {
    for (k, v, want) in [
        ("KDTHIN_REMOTE", "grpcs://h:1", "TLS"),
        ("KDTHIN_REMOTE", "h:1", "grpc://HOST:PORT"),
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
    let settings =
        RemoteSettings::from_vars(vars(&[("KDTHIN_REMOTE", &format!("grpc://127.0.0.1:{port}"))])).unwrap().unwrap();
    let local = Arc::new(FakeLocal(AtomicU64::new(0)));
    let scan: IncbinScan = Arc::new(|_| Ok(vec![]));
    let exec = RemoteExecutor::new(settings, t.path().to_path_buf(), local.clone(), Slots::counting(1), scan).unwrap();
    let idx = t.path().join("idx");
    let job = |id| Job {
        id,
        label: "m.o".into(),
        argv: ["true", &format!("-fthinlto-index={}", idx.display()), "-o", "/out.o", "m.o"]
            .iter()
            .map(OsString::from)
            .collect(),
        inputs: vec!["m.o".into(), idx.clone()],
        outputs: vec!["/out.o".into()],
        weight: 0,
        install: None,
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

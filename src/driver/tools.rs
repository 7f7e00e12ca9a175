//! Running ld.lld itself (thin-link, final link).

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::exec::{self, shell_quote};
use crate::settings::Settings;

/// Run a command, echoing it first when verbose. With `capture`, its
/// stderr also goes there (still shown as it comes).
pub(super) fn run_tool(
    settings: &Settings,
    argv0: &Path,
    args: &[OsString],
    capture: Option<&mut Vec<u8>>,
) -> Result<std::process::ExitStatus> {
    use std::io::Read;
    if settings.verbose {
        let mut all = vec![argv0.as_os_str().to_os_string()];
        all.extend_from_slice(args);
        println!("  {}", shell_quote(&all));
    }
    let mut cmd = Command::new(argv0);
    cmd.args(args);
    if capture.is_some() {
        cmd.stderr(std::process::Stdio::piped());
    }
    // Registered, so a SIGTERM from outside stops it before the work
    // directory it reads is removed; and never started once one arrived.
    let spawned = exec::signals::spawn(&mut cmd);
    if spawned.is_err() {
        exec::signals::park_if_cancelled();
    }
    let mut child = spawned.with_context(|| format!("cannot run {}", argv0.display()))?;
    let tee = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let (mut all, mut buf) = (Vec::new(), [0u8; 8192]);
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = std::io::stderr().write_all(&buf[..n]);
                all.extend_from_slice(&buf[..n]);
            }
            all
        })
    });
    let st = exec::signals::wait_child(&mut child).with_context(|| format!("waiting for {}", argv0.display()));
    if let (Some(t), Some(out)) = (tee, capture) {
        out.extend(t.join().unwrap_or_default());
    }
    exec::signals::park_if_cancelled();
    st
}

/// Arguments too long for one exec go through a response file.
pub(super) fn maybe_rsp(work: &Path, name: &str, args: Vec<OsString>) -> Result<Vec<OsString>> {
    let total: usize = args.iter().map(|a| a.len() + 1).sum();
    if total < 100_000 {
        return Ok(args);
    }
    // An argument a response file cannot carry (empty, NUL, not UTF-8):
    // pass them directly and let the kernel judge the length.
    let Ok(text) = crate::args::rsp::try_write_rsp(&args) else { return Ok(args) };
    let p = work.join(name);
    std::fs::write(&p, text).with_context(|| format!("{}: cannot write", p.display()))?;
    let mut at = OsString::from("@");
    at.push(&p);
    Ok(vec![at])
}

pub(super) fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(1))
}

//! Backends forked from a running compiler instead of started from scratch.
//!
//! Every clang start costs ~20 ms of CPU before it reads any bitcode
//! (dynamic loading of libLLVM and libclang-cpp, LLVM's static
//! initialisers): thousands of times per kernel link. A fork server is one
//! compiler process per compiler binary, started with the shim
//! (forkserver/shim.c, built by build.rs) in `LD_PRELOAD`; past its
//! start-up, it forks once per backend and the child runs the compiler's
//! own `main` with the backend's argv, working directory, environment and
//! output pipe (the protocol is described in shim.c). The natives are the
//! same bytes as with exec (tested); the job's output check is unchanged.
//!
//! A compiler that cannot be served runs by exec, with one verbose line:
//! not a dynamically linked ELF executable of our machine (a script, a
//! static binary), a compiler wrapper (ccache), set-user-ID, or no shim
//! installed. A server that cannot start, dies, or answers wrongly is
//! retired: the job it failed is run by exec, and so is every later job
//! of that compiler in this link. A server refuses (and exits) when the
//! compiler or one of its libraries changed on disk since it started.
//!
//! Servers die with kdthin-ld (parent-death signal) and end when the link
//! drops them. Their children die with them, are stopped on SIGINT/SIGTERM
//! through pidfds the server hands us ([`signals::register_pidfd`]), and
//! never run past a cancelled link.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use super::signals;
use crate::env::Env;

/// The shim's file name, in `<bindir>/../lib/kdthin-ld/` when installed and
/// beside the programs in a cargo target directory.
pub const SHIM_NAME: &str = "libkdthin-forkserver.so";
/// The setting that turns fork servers off.
pub const ENV_SWITCH: &str = "KDTHIN_FORKSERVER";
/// What the shim looks for in argv[1] (shim.c: FORKSERVER_ARG).
const SERVER_ARG: &str = "--kdthin-forkserver";
/// The control socket's fd in the server.
const CONTROL_FD: RawFd = 3;
/// A server not ready by then is given up (a clang starts in ~50 ms).
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Compiler wrappers: forking one would fork the wrapper, not the compiler.
const WRAPPERS: [&str; 4] = ["ccache", "sccache", "distcc", "icecc"];

/// The shim for the kdthin-ld at `exe`: installed, or in its build tree.
pub fn find_shim(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    [dir.join("../lib/kdthin-ld").join(SHIM_NAME), dir.join(SHIM_NAME)].into_iter().find(|p| p.is_file())
}

/// Whether backends are forked from a fork server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ForkServerSetting {
    /// `KDTHIN_FORKSERVER=off`.
    #[default]
    Off,
    /// On, with this shim (installed relative to kdthin-ld).
    On(PathBuf),
    /// On, but the shim is not installed: why.
    NoShim(String),
}

impl ForkServerSetting {
    /// `KDTHIN_FORKSERVER` (on unless off), and the shim beside the
    /// running kdthin-ld (or kdthin: they are installed together).
    pub fn from_env(env: &Env, warnings: &mut Vec<String>) -> ForkServerSetting {
        if !crate::switch::get(ENV_SWITCH, true, |k| env.var_os(k), warnings) {
            return ForkServerSetting::Off;
        }
        match find_shim(&env.self_exe) {
            Some(shim) => ForkServerSetting::On(shim),
            None => {
                ForkServerSetting::NoShim(format!("{SHIM_NAME} is not installed beside {}", env.self_exe.display()))
            }
        }
    }
}

/// The fork servers of one link, started on first use, one per compiler
/// binary.
pub struct ForkServers {
    shim: PathBuf,
    verbose: bool,
    state: Mutex<State>,
    /// Backends a server ran (for the report).
    served: AtomicUsize,
}

#[derive(Default)]
struct State {
    /// argv[0] as jobs spell it → the binary it runs (None: not found).
    resolved: HashMap<OsString, Option<PathBuf>>,
    /// The binary → its server, or None: run by exec.
    servers: HashMap<PathBuf, Option<Arc<Server>>>,
}

/// What became of a job given to a server.
enum Served {
    Done(Vec<u8>, ExitStatus),
    Cancelled,
    /// Not run; run it by exec (the server is fine).
    NotRun(String),
    /// Not run, or its child's end is unknown: retire the server and run
    /// the job by exec.
    ServerGone(String),
}

impl ForkServers {
    pub fn new(shim: PathBuf, verbose: bool) -> ForkServers {
        ForkServers { shim, verbose, state: Mutex::default(), served: AtomicUsize::new(0) }
    }

    /// How many jobs a server ran.
    pub fn served(&self) -> usize {
        self.served.load(Relaxed)
    }

    /// Runs `argv` on its compiler's server: its output (stdout and stderr
    /// together) and exit status. None: run it by exec instead (not
    /// served, or the server failed it; nothing of it is left running).
    pub fn run(&self, argv: &[OsString]) -> Option<Result<(Vec<u8>, ExitStatus), super::JobError>> {
        let server = self.server_for(argv.first()?)?;
        let Some(request) = encode_request(argv) else { return None };
        match server.run(&request) {
            Served::Done(output, status) => {
                self.served.fetch_add(1, Relaxed);
                Some(Ok((output, status)))
            }
            Served::Cancelled => Some(Err(super::JobError::Cancelled)),
            Served::NotRun(why) => {
                self.say(&format!("fork server for {}: {why}; running the job by exec", server.exe.display()));
                None
            }
            Served::ServerGone(why) => {
                self.retire(&server, &why);
                None
            }
        }
    }

    fn say(&self, line: &str) {
        if self.verbose {
            eprintln!("kdthin-ld: {line}");
        }
    }

    /// The server for `program` (argv[0]), started if need be; None when
    /// it is run by exec.
    fn server_for(&self, program: &OsStr) -> Option<Arc<Server>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let exe = state.resolved.entry(program.to_os_string()).or_insert_with(|| resolve(program)).clone()?;
        if let Some(s) = state.servers.get(&exe) {
            return s.clone();
        }
        // Started under the lock: the other jobs of this compiler wait the
        // ~50 ms rather than start compilers of their own meanwhile.
        let server = match why_not_served(program, &exe) {
            Some(why) => Err(why),
            None => Server::start(&exe, &self.shim).map(Arc::new),
        };
        let server = match server {
            Ok(s) => {
                self.say(&format!("fork server for {}: pid {}", exe.display(), s.pid));
                Some(s)
            }
            Err(why) => {
                self.say(&format!("{}: no fork server, its backends run by exec: {why}", exe.display()));
                None
            }
        };
        state.servers.insert(exe, server.clone());
        server
    }

    /// `server` failed: its compiler's jobs run by exec from now on.
    fn retire(&self, server: &Arc<Server>, why: &str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = state.servers.get_mut(&server.exe) {
            if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, server)) {
                *slot = None;
                drop(state);
                self.say(&format!(
                    "fork server for {}: {why}; its backends run by exec from now on",
                    server.exe.display()
                ));
            }
        }
    }
}

/// Where `program` is, as exec would find it (PATH when it has no slash),
/// with symlinks resolved.
fn resolve(program: &OsStr) -> Option<PathBuf> {
    let p = Path::new(program);
    let found = if program.as_bytes().contains(&b'/') {
        Some(p.to_path_buf())
    } else {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join(p))
            .find(|c| std::fs::metadata(c).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
    };
    std::fs::canonicalize(found?).ok()
}

/// Why `exe` (run as `program`) cannot be forked from a server, if so.
fn why_not_served(program: &OsStr, exe: &Path) -> Option<String> {
    let names = [Path::new(program).file_name(), exe.file_name()];
    if let Some(w) = names.iter().flatten().find(|n| WRAPPERS.iter().any(|w| n.as_bytes() == w.as_bytes())) {
        return Some(format!("{} is a compiler wrapper", w.to_string_lossy()));
    }
    let meta = match std::fs::metadata(exe) {
        Ok(m) => m,
        Err(e) => return Some(e.to_string()),
    };
    if meta.permissions().mode() & 0o6000 != 0 {
        return Some("set-user-ID or set-group-ID: LD_PRELOAD does not apply".into());
    }
    let ours = elf_facts(Path::new("/proc/self/exe")).ok().flatten();
    match elf_facts(exe) {
        Err(e) => Some(format!("cannot read it: {e}")),
        Ok(None) => Some("not an ELF executable (a script?)".into()),
        Ok(Some(f)) if !f.interp => Some("statically linked: LD_PRELOAD does not apply".into()),
        Ok(Some(f)) if ours.is_some_and(|o| o.machine != f.machine) => Some("not for this machine".into()),
        Ok(Some(_)) => None,
    }
}

#[derive(Clone, Copy)]
struct ElfFacts {
    /// (class, data, e_machine)
    machine: (u8, u8, u16),
    /// Has a program interpreter: dynamically linked.
    interp: bool,
}

/// None when `path` is not ELF.
fn elf_facts(path: &Path) -> io::Result<Option<ElfFacts>> {
    use object::read::elf::{FileHeader, ProgramHeader};
    let file = File::open(path)?;
    // SAFETY: read-only map of a file we only read headers from; a
    // concurrent truncation could fault, as for any mapped input.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let data = &map[..];
    if !data.starts_with(&object::elf::ELFMAG) || data.len() < 20 {
        return Ok(None);
    }
    fn facts<H: FileHeader<Endian = object::Endianness>>(data: &[u8]) -> Option<ElfFacts> {
        let h = H::parse(data).ok()?;
        let endian = h.endian().ok()?;
        let interp = h.program_headers(endian, data).ok()?.iter().any(|p| p.p_type(endian) == object::elf::PT_INTERP);
        let ident = h.e_ident();
        Some(ElfFacts { machine: (ident.class, ident.data, h.e_machine(endian)), interp })
    }
    Ok(match data[4] {
        object::elf::ELFCLASS64 => facts::<object::elf::FileHeader64<object::Endianness>>(data),
        object::elf::ELFCLASS32 => facts::<object::elf::FileHeader32<object::Endianness>>(data),
        _ => None,
    })
}

/// The request for `argv` (shim.c): None when it cannot be sent (a NUL in
/// an argument, no current directory); exec then reports what is wrong.
fn encode_request(argv: &[OsString]) -> Option<Vec<u8>> {
    let cwd = std::env::current_dir().ok()?;
    let env: Vec<OsString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            kv
        })
        .collect();
    let mut data = b"KFS1".to_vec();
    data.extend_from_slice(&u32::try_from(argv.len()).ok()?.to_ne_bytes());
    data.extend_from_slice(&u32::try_from(env.len()).ok()?.to_ne_bytes());
    for s in std::iter::once(cwd.as_os_str())
        .chain(argv.iter().map(|a| a.as_os_str()))
        .chain(env.iter().map(|e| e.as_os_str()))
    {
        if s.as_bytes().contains(&0) {
            return None;
        }
        data.extend_from_slice(s.as_bytes());
        data.push(0);
    }
    Some(data)
}

/// One running server.
struct Server {
    exe: PathBuf,
    pid: u32,
    control: OwnedFd,
}

impl Server {
    /// Starts the server for `exe` and waits until it is ready. Its owner
    /// thread spawns it (the parent-death signal follows that thread) and
    /// reaps it when it ends; dropping the server closes its control
    /// socket, which ends it.
    fn start(exe: &Path, shim: &Path) -> Result<Server, String> {
        if shim.as_os_str().as_bytes().iter().any(|b| b" :".contains(b)) {
            // LD_PRELOAD splits at both.
            return Err(format!("{}: LD_PRELOAD cannot name a path with a space or colon", shim.display()));
        }
        let (ours, theirs) = socketpair().map_err(|e| format!("socketpair: {e}"))?;
        let mut preload = shim.as_os_str().to_os_string();
        if let Some(more) = std::env::var_os("LD_PRELOAD").filter(|p| !p.is_empty()) {
            preload.push(":");
            preload.push(more);
        }
        let mut cmd = Command::new(exe);
        cmd.args([SERVER_ARG, &CONTROL_FD.to_string(), &std::process::id().to_string()])
            .env("LD_PRELOAD", preload)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let fd = theirs.as_raw_fd();
        // SAFETY: dup2 and fcntl are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                let rc = if fd == CONTROL_FD { libc::fcntl(fd, libc::F_SETFD, 0) } else { libc::dup2(fd, CONTROL_FD) };
                if rc < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("kdthin-forkserver".into())
            .spawn(move || match signals::spawn(&mut cmd) {
                Err(e) => drop(tx.send(Err(e))),
                Ok(mut child) => {
                    drop(theirs);
                    let _ = tx.send(Ok(child.id()));
                    let _ = signals::wait_child(&mut child);
                }
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        let pid = match rx.recv() {
            Ok(Ok(pid)) => pid,
            Ok(Err(e)) => return Err(format!("cannot start it: {e}")),
            Err(_) => return Err("its thread ended".into()),
        };
        if !readable(&ours, READY_TIMEOUT).map_err(|e| format!("poll: {e}"))? {
            return Err(format!("not ready within {} s", READY_TIMEOUT.as_secs()));
        }
        let (msg, _) = recv(&ours).map_err(|e| format!("reading its answer: {e}"))?;
        match msg.split_first() {
            Some((b'R', _)) => Ok(Server { exe: exe.to_path_buf(), pid, control: ours }),
            Some((b'E', why)) => Err(String::from_utf8_lossy(why).into_owned()),
            None => Err("it exited at start (the shim was not loaded?)".into()),
            Some(_) => Err("it answered something else than the shim would".into()),
        }
    }

    fn run(&self, request: &[u8]) -> Served {
        if signals::cancelled() {
            return Served::Cancelled;
        }
        let (job, theirs) = match socketpair() {
            Ok(p) => p,
            Err(e) => return Served::NotRun(format!("socketpair: {e}")),
        };
        let (mut output_r, output_w) = match super::pipe() {
            Ok(p) => p,
            Err(e) => return Served::NotRun(format!("pipe: {e}")),
        };
        let fds = [theirs.as_raw_fd(), output_w.as_raw_fd(), output_w.as_raw_fd()];
        if let Err(e) = send_with_fds(&self.control, request, &fds) {
            return if e.raw_os_error() == Some(libc::EMSGSIZE) {
                Served::NotRun(format!("the job is too large to send: {e}"))
            } else {
                Served::ServerGone(format!("cannot send it a job: {e}"))
            };
        }
        // Only the child may hold the write end now, so the read below
        // ends when it exits.
        drop((theirs, output_w));
        // 'P', the child's pid, and a pidfd for it.
        let pidfd = match recv(&job) {
            Ok((msg, Some(pidfd))) if msg.len() == 5 && msg[0] == b'P' => pidfd,
            Ok((msg, _)) => return Served::ServerGone(answer(&msg, "a pid")),
            Err(e) => return Served::ServerGone(format!("reading its answer: {e}")),
        };
        let registered = signals::register_pidfd(pidfd.as_raw_fd());
        if registered.is_err() {
            // Cancelled meanwhile: stop it, then wait for it below.
            signals::pidfd_kill(pidfd.as_raw_fd(), libc::SIGTERM);
        }
        let mut output = Vec::new();
        let read = output_r.read_to_end(&mut output);
        let mut setup_failed = None;
        let status = loop {
            match recv(&job) {
                Ok((msg, _)) if msg.len() == 29 && msg[0] == b'X' => {
                    break Some(i32::from_ne_bytes(msg[1..5].try_into().unwrap()))
                }
                Ok((msg, _)) if msg.first() == Some(&b'S') => {
                    setup_failed = Some(String::from_utf8_lossy(&msg[1..]).into_owned())
                }
                Ok((msg, _)) if msg.is_empty() => break None,
                Ok(_) | Err(_) => break None,
            }
        };
        if status.is_none() {
            // The server is gone (or garbled): its child got the parent-
            // death signal; it must be gone before the job is run again.
            let _ = wait_gone(&pidfd);
        }
        if registered.is_ok() {
            signals::unregister_pidfd(pidfd.as_raw_fd());
        }
        if signals::cancelled() || registered.is_err() {
            return Served::Cancelled;
        }
        match (status, setup_failed, read) {
            (None, _, _) => Served::ServerGone("it exited while running a job".into()),
            (Some(_), Some(why), _) => Served::NotRun(why),
            (Some(_), None, Err(e)) => Served::NotRun(format!("reading the job's output: {e}")),
            (Some(st), None, Ok(_)) => Served::Done(output, ExitStatus::from_raw(st)),
        }
    }
}

/// Describes an answer that is not the expected one.
fn answer(msg: &[u8], wanted: &str) -> String {
    match msg.split_first() {
        None => "it exited".into(),
        Some((b'E', why)) => String::from_utf8_lossy(why).into_owned(),
        Some(_) => format!("it answered something else than {wanted}"),
    }
}

fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair fills two new fds on success; we own them.
    unsafe {
        if libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// True when `fd` is readable (or at EOF) within `timeout`.
fn readable(fd: &OwnedFd, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut p, 1, ms) } {
            rc if rc >= 0 => return Ok(rc > 0),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Waits until the process of `pidfd` has exited.
fn wait_gone(pidfd: &OwnedFd) -> io::Result<()> {
    while !readable(pidfd, Duration::from_secs(3600))? {}
    Ok(())
}

fn send_with_fds(sock: &OwnedFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
    // SAFETY: msghdr is plain data; every pointer in it outlives the call;
    // the control buffer is CMSG_SPACE bytes, aligned for cmsghdr.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut _;
        msg.msg_controllen = space as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr() as *const u8, libc::CMSG_DATA(c), fd_bytes);
        loop {
            if libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// One message, and the fd it carried if any. An empty message is EOF
/// (no message of the protocol is empty).
fn recv(sock: &OwnedFd) -> io::Result<(Vec<u8>, Option<OwnedFd>)> {
    let mut buf = vec![0u8; 2048];
    // SAFETY: as in send_with_fds.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut _, iov_len: buf.len() };
    // SAFETY: as in send_with_fds; received fds are taken into OwnedFds
    // (closed if we do not want them).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut _;
        msg.msg_controllen = space as _;
        let n = loop {
            let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        let mut fd = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    let raw = std::ptr::read_unaligned((libc::CMSG_DATA(c) as *const RawFd).add(i));
                    let owned = OwnedFd::from_raw_fd(raw);
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        buf.truncate(n);
        Ok((buf, fd))
    }
}

#[cfg(test)]
mod tests;

//! The on-disk store: entries, size accounting, eviction.
//!
//! Layout under the cache directory:
//! ```text
//! CACHEDIR.TAG         tells backup tools to skip the cache
//! v1/stats             hit/miss totals ("name value" lines), under v1/lock
//! v1/<h>/              16 shards by the key's first hex digit, each with
//!        <key hex>     an entry
//!        size          "bytes files": what the shard holds, under <h>/lock
//!        lock          flock(2) target
//!        .tmp.*        entries being written
//! ```
//! Entries appear by rename(2) in their own directory, so a reader sees a
//! whole entry or none; each holds its length and a blake3 hash of its
//! content, checked on every read, so a torn write (crash, full disk,
//! someone's `cp`) is detected and discarded.
//!
//! Size is kept per shard, like ccache: a put adds to its shard's counter
//! under the shard lock, and only when that shard exceeds its 1/16 of the
//! budget is that shard listed and its least recently used entries removed
//! (a hit sets the entry's mtime). No link ever walks the whole cache.
//! Counters can drift (a crash between rename and count, two processes
//! storing the same key at once); every cleanup recounts its shard.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::key::Key;
use crate::exec::signals;

const SHARDS: u32 = 16;
const MAGIC: &[u8; 8] = b"KDTHIN\x01\n";
/// magic, key, object length, stderr length, blake3 of object + stderr.
const HEADER: usize = 8 + 32 + 8 + 8 + 32;
/// A cleanup brings its shard down to this share of its budget, so the next
/// few puts do not trigger another one.
const CLEANUP_TARGET_PERCENT: u64 = 90;
/// Temporary files older than this belong to a process that died.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// Persisted counters, in file order.
pub const STAT_NAMES: [&str; 5] = ["hits", "misses", "uncacheable", "stored", "evicted"];

pub struct Store {
    /// `<cache dir>/v1`.
    root: PathBuf,
    /// Bytes; 0 = no limit.
    max_size: u64,
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The object is at the destination (with `unchanged`, as a hard link
    /// to the installed path, which already held it); `stderr` is what to
    /// replay.
    Hit {
        stderr: Vec<u8>,
        unchanged: bool,
    },
    Miss,
    /// The entry failed its check and was removed.
    Corrupt,
}

impl Store {
    /// Creates the directory if needed and checks that we can write there.
    pub fn open(dir: &Path, max_size: u64) -> io::Result<Store> {
        let store = Store::at(dir, max_size);
        let root = &store.root;
        fs::create_dir_all(root)?;
        let tag = dir.join("CACHEDIR.TAG");
        if !tag.exists() {
            let text = "Signature: 8a477f597d28d172789f06886806bc55\n# kdthin-ld's cache of ThinLTO backend objects; safe to delete.\n";
            write_atomically(&tag, &[text.as_bytes()])?;
        }
        // Writable? (A read-only mount or another user's directory.)
        let (probe, _) = Temp::create(tmp_path(root))?;
        probe.remove()?;
        Ok(store)
    }

    /// The store at `dir`, without creating or checking anything: for
    /// reports on a cache that may not exist.
    pub fn at(dir: &Path, max_size: u64) -> Store {
        Store { root: dir.join("v1"), max_size }
    }

    fn shard(&self, key: &Key) -> PathBuf {
        self.root.join(format!("{:x}", key.0[0] >> 4))
    }

    fn entry(&self, key: &Key) -> PathBuf {
        self.shard(key).join(key.to_hex())
    }

    /// Copies the entry's object to `dest` (through a temporary beside it,
    /// renamed: `dest` is whole or absent). Err only for trouble with the
    /// cache itself; a destination we cannot write is a miss, and the
    /// backend that then runs will report it.
    /// On a verified hit, writes the object to `dest`, unless `installed`
    /// already holds exactly these bytes (then nothing is written).
    /// `usable` judges the object and its stderr beyond the entry's own
    /// check (a backend's object must be one: `exec::verify`); an entry
    /// it rejects is removed like a corrupt one.
    pub fn get(
        &self,
        key: &Key,
        dest: &Path,
        installed: Option<&Path>,
        usable: &dyn Fn(&[u8], &[u8]) -> bool,
    ) -> io::Result<Lookup> {
        let path = self.entry(key);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lookup::Miss),
            Err(e) => return Err(e),
        };
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let Some((obj, stderr)) = check(&data, key).filter(|(obj, stderr)| usable(obj, stderr)) else {
            drop(file);
            self.discard(key, &path, data.len() as u64);
            return Ok(Lookup::Corrupt);
        };
        // Least recently *used*: a hit counts as a use. Failing to touch
        // (an entry another user stored) costs only eviction order.
        let _ = file.set_modified(SystemTime::now());
        // `dest` is what this link's final link reads. When the installed
        // native already holds this object, `dest` becomes a hard link to
        // it: a snapshot no concurrent link can change (they replace the
        // installed file by rename, never in place), for one syscall
        // instead of a write. Compared after linking, so a replacement
        // between the two cannot slip in.
        if let Some(inst) = installed {
            if fs::hard_link(inst, dest).is_ok() {
                if same_content(dest, obj) {
                    return Ok(Lookup::Hit { stderr: stderr.to_vec(), unchanged: true });
                }
                let _ = fs::remove_file(dest);
            }
        }
        if write_atomically(dest, &[obj]).is_err() {
            return Ok(Lookup::Miss);
        }
        Ok(Lookup::Hit { stderr: stderr.to_vec(), unchanged: false })
    }

    /// Stores `native` (and the stderr of the compile that made it) under
    /// `key`, then keeps the shard within budget. Returns the number of
    /// entries evicted.
    pub fn put(&self, key: &Key, native: &[u8], stderr: &[u8]) -> io::Result<u64> {
        let path = self.entry(key);
        // Another link (or thread) stored it first: same key, same object.
        if path.exists() {
            return Ok(0);
        }
        let shard = self.shard(key);
        fs::create_dir_all(&shard)?;
        let mut content = blake3::Hasher::new();
        content.update(native);
        content.update(stderr);
        let header = entry_header(key, native.len() as u64, stderr.len() as u64, &content);
        write_atomically(&path, &[&header, native, stderr])?;

        self.count_new_entry(&shard, (HEADER + native.len() + stderr.len()) as u64)
    }

    /// Adds a stored entry of `size` bytes to its shard's counter, and
    /// keeps the shard within budget. Returns the number of entries evicted.
    fn count_new_entry(&self, shard: &Path, size: u64) -> io::Result<u64> {
        let _lock = Lock::take(&shard.join("lock"))?;
        let budget = self.shard_budget();
        let target = budget / 100 * CLEANUP_TARGET_PERCENT;
        // A missing or garbled counter is rebuilt from the listing.
        let Some((bytes, files)) = read_counter(shard) else { return self.cleanup_locked(shard, target) };
        let (bytes, files) = (bytes.saturating_add(size), files + 1);
        if bytes > budget {
            return self.cleanup_locked(shard, target);
        }
        write_counter(shard, bytes, files)?;
        Ok(0)
    }

    /// [`Store::put`] for a file too large to hold in memory (a whole
    /// link's output): hashed, then copied, in blocks.
    pub fn put_file(&self, key: &Key, file: &Path, meta: &[u8]) -> io::Result<u64> {
        let path = self.entry(key);
        if path.exists() {
            return Ok(0);
        }
        let shard = self.shard(key);
        fs::create_dir_all(&shard)?;
        let mut content = blake3::Hasher::new();
        let len = copy_blocks(&mut File::open(file)?, &mut io::sink(), &mut content)?;
        content.update(meta);
        let header = entry_header(key, len, meta.len() as u64, &content);
        let written = (|| {
            let (tmp, out) = Temp::create(tmp_path(&shard))?;
            let mut out = io::BufWriter::new(out);
            out.write_all(&header)?;
            // The file may have changed since it was hashed: copy exactly
            // what was hashed, or fail.
            let mut again = blake3::Hasher::new();
            let copied = copy_blocks(&mut File::open(file)?.take(len), &mut out, &mut again)?;
            again.update(meta);
            if copied != len || again.finalize() != content.finalize() {
                return Err(io::Error::other(format!("{}: changed while being stored", file.display())));
            }
            out.write_all(meta)?;
            out.into_inner().map_err(|e| e.into_error())?;
            tmp.rename_to(&path)
        })();
        written?;
        self.count_new_entry(&shard, HEADER as u64 + len + meta.len() as u64)
    }

    /// [`Store::get`] for a [`Store::put_file`] entry: the object is copied
    /// to `dest` in blocks (through a temporary beside it, renamed once the
    /// entry checked out) and the meta bytes returned. Never holds the
    /// object in memory.
    pub fn get_file(&self, key: &Key, dest: &Path) -> io::Result<Lookup> {
        let path = self.entry(key);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lookup::Miss),
            Err(e) => return Err(e),
        };
        let total = file.metadata()?.len();
        let mut header = [0u8; HEADER];
        let header_ok = file.read_exact(&mut header).is_ok()
            && &header[..8] == MAGIC
            && header[8..40] == key.0
            && u64::from_le_bytes(header[40..48].try_into().unwrap())
                .checked_add(u64::from_le_bytes(header[48..56].try_into().unwrap()))
                .and_then(|body| body.checked_add(HEADER as u64))
                == Some(total);
        if !header_ok {
            drop(file);
            self.discard(key, &path, total);
            return Ok(Lookup::Corrupt);
        }
        let obj_len = u64::from_le_bytes(header[40..48].try_into().unwrap());
        let mut content = blake3::Hasher::new();
        let copied = (|| {
            let (tmp, out) = Temp::create(tmp_path(dir_of(dest)))?;
            let mut out = io::BufWriter::new(out);
            let n = copy_blocks(&mut (&mut file).take(obj_len), &mut out, &mut content)?;
            out.into_inner().map_err(|e| e.into_error())?;
            Ok::<_, io::Error>((tmp, n))
        })();
        // (A failed copy's temporary is gone with its `Temp`.)
        let Ok((tmp, n)) = copied else {
            return Ok(Lookup::Miss);
        };
        let mut meta = Vec::new();
        let meta_ok = file.read_to_end(&mut meta).is_ok();
        content.update(&meta);
        if n != obj_len || !meta_ok || content.finalize().as_bytes() != &header[56..88] {
            drop(tmp);
            drop(file);
            self.discard(key, &path, total);
            return Ok(Lookup::Corrupt);
        }
        let _ = file.set_modified(SystemTime::now());
        if tmp.rename_to(dest).is_err() {
            return Ok(Lookup::Miss);
        }
        Ok(Lookup::Hit { stderr: meta, unchanged: false })
    }

    fn shard_budget(&self) -> u64 {
        match self.max_size {
            0 => u64::MAX,
            m => (m / u64::from(SHARDS)).max(1),
        }
    }

    /// Removes a bad entry and takes it off its shard's count.
    fn discard(&self, key: &Key, path: &Path, len: u64) {
        let shard = self.shard(key);
        let Ok(_lock) = Lock::take(&shard.join("lock")) else { return };
        if fs::remove_file(path).is_ok() {
            if let Some((bytes, files)) = read_counter(&shard) {
                let _ = write_counter(&shard, bytes.saturating_sub(len), files.saturating_sub(1));
            }
        }
    }

    /// Recounts a shard from its listing and removes the least recently
    /// used entries until it holds at most `target` bytes. Caller holds
    /// the shard lock.
    fn cleanup_locked(&self, shard: &Path, target: u64) -> io::Result<u64> {
        let mut entries = Vec::new();
        let now = SystemTime::now();
        for e in fs::read_dir(shard)? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Ok(md) = e.metadata() else { continue };
            let mtime = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if name.starts_with(".tmp.") {
                if now.duration_since(mtime).unwrap_or_default() > STALE_TMP {
                    let _ = fs::remove_file(e.path());
                }
            } else if is_entry_name(&name) {
                entries.push((mtime, md.len(), e.path()));
            }
        }
        entries.sort();
        let mut bytes: u64 = entries.iter().map(|e| e.1).sum();
        let mut files = entries.len() as u64;
        let mut evicted = 0;
        for (_, len, path) in &entries {
            if bytes <= target {
                break;
            }
            if fs::remove_file(path).is_ok() {
                bytes -= len;
                files -= 1;
                evicted += 1;
            }
        }
        write_counter(shard, bytes, files)?;
        Ok(evicted)
    }

    /// Sum of the shard counters: cheap, and close enough for a report.
    pub fn size(&self) -> (u64, u64) {
        (0..SHARDS)
            .filter_map(|s| read_counter(&self.root.join(format!("{s:x}"))))
            .fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1))
    }

    /// Removes every entry. Shard directories stay: a link running now
    /// may be about to rename an entry into one.
    pub fn clear(&self) -> io::Result<()> {
        for s in 0..SHARDS {
            let shard = self.root.join(format!("{s:x}"));
            if !shard.is_dir() {
                continue;
            }
            let _lock = Lock::take(&shard.join("lock"))?;
            for e in fs::read_dir(&shard)? {
                let e = e?;
                if is_entry_name(&e.file_name().to_string_lossy()) {
                    fs::remove_file(e.path())?;
                }
            }
            write_counter(&shard, 0, 0)?;
        }
        Ok(())
    }

    /// Adds to the persisted totals.
    pub fn add_stats(&self, add: &[u64; 5]) -> io::Result<()> {
        if add.iter().all(|&n| n == 0) {
            return Ok(());
        }
        let _lock = Lock::take(&self.root.join("lock"))?;
        let mut totals = self.read_stats();
        for (t, a) in totals.iter_mut().zip(add) {
            *t = t.saturating_add(*a);
        }
        let text: String = STAT_NAMES.iter().zip(totals).map(|(n, v)| format!("{n} {v}\n")).collect();
        write_atomically(&self.root.join("stats"), &[text.as_bytes()])
    }

    pub fn zero_stats(&self) -> io::Result<()> {
        if !self.root.is_dir() {
            return Ok(());
        }
        let _lock = Lock::take(&self.root.join("lock"))?;
        match fs::remove_file(self.root.join("stats")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn read_stats(&self) -> [u64; 5] {
        let mut out = [0; 5];
        let text = fs::read_to_string(self.root.join("stats")).unwrap_or_default();
        for line in text.lines() {
            let mut w = line.split_whitespace();
            if let (Some(name), Some(Ok(v))) = (w.next(), w.next().map(str::parse)) {
                if let Some(i) = STAT_NAMES.iter().position(|n| *n == name) {
                    out[i] = v;
                }
            }
        }
        out
    }
}

/// The object and stderr of a well-formed entry for `key`.
fn check<'a>(data: &'a [u8], key: &Key) -> Option<(&'a [u8], &'a [u8])> {
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap());
    if data.len() < HEADER || &data[..8] != MAGIC || data[8..40] != key.0 {
        return None;
    }
    let (obj_len, err_len) = (u64_at(40), u64_at(48));
    let body = &data[HEADER..];
    if obj_len.checked_add(err_len) != Some(body.len() as u64) || blake3::hash(body).as_bytes() != &data[56..88] {
        return None;
    }
    Some(body.split_at(obj_len as usize))
}

fn is_entry_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn read_counter(shard: &Path) -> Option<(u64, u64)> {
    let text = fs::read_to_string(shard.join("size")).ok()?;
    let mut w = text.split_whitespace().map(str::parse::<u64>);
    match (w.next(), w.next()) {
        (Some(Ok(b)), Some(Ok(f))) => Some((b, f)),
        _ => None,
    }
}

fn write_counter(shard: &Path, bytes: u64, files: u64) -> io::Result<()> {
    write_atomically(&shard.join("size"), &[format!("{bytes} {files}\n").as_bytes()])
}

/// A temporary name in `dir` no other thread or process uses: pid plus a
/// process-wide counter, plus the time, since containers sharing a cache
/// can reuse pids.
fn tmp_path(dir: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
    dir.join(format!(".tmp.{}.{n}.{t:x}", std::process::id()))
}

/// The directory `path` is in (`.` for a bare name).
fn dir_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn write_atomically(dest: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let (tmp, mut f) = Temp::create(tmp_path(dir_of(dest)))?;
    for p in parts {
        f.write_all(p)?;
    }
    drop(f);
    tmp.rename_to(dest)
}

/// A temporary file on its way to being renamed into place. Until then
/// it is registered with the signal handler, so a SIGTERM mid-write
/// removes it instead of leaving `.tmp.*` litter in the cache; dropped
/// without [`Temp::rename_to`], it is removed.
struct Temp {
    path: PathBuf,
    done: bool,
}

impl Temp {
    fn create(path: PathBuf) -> io::Result<(Temp, File)> {
        let f = signals::create_registered(&path, |p| OpenOptions::new().write(true).create_new(true).open(p))?;
        Ok((Temp { path, done: false }, f))
    }

    fn rename_to(mut self, dest: &Path) -> io::Result<()> {
        fs::rename(&self.path, dest)?;
        self.done = true;
        Ok(())
    }

    fn remove(mut self) -> io::Result<()> {
        fs::remove_file(&self.path)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
        signals::unregister_cleanup(&self.path);
    }
}

/// An exclusive flock(2), released when dropped. flock locks belong to the
/// open file, so two threads of one process exclude each other too.
struct Lock {
    _file: File,
}

impl Lock {
    fn take(path: &Path) -> io::Result<Lock> {
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Lock { _file: f });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// magic, key, object length, stderr (or meta) length, content hash.
fn entry_header(key: &Key, obj_len: u64, extra_len: u64, content: &blake3::Hasher) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&key.0);
    header.extend_from_slice(&obj_len.to_le_bytes());
    header.extend_from_slice(&extra_len.to_le_bytes());
    header.extend_from_slice(content.finalize().as_bytes());
    header
}

/// Copies `from` to `to` in 1 MiB blocks, hashing what passes; returns
/// the byte count.
fn copy_blocks(from: &mut impl Read, to: &mut impl Write, hash: &mut blake3::Hasher) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hash.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Does the file at `path` hold exactly `data`? Reading it back costs far
/// less than creating and renaming a file over it.
fn same_content(path: &Path, data: &[u8]) -> bool {
    match fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == data.len() as u64 => fs::read(path).is_ok_and(|d| d == data),
        _ => false,
    }
}

//! Tests of the backend cache. Those named `real_*` run clang-22 and
//! ld.lld-22; without them they say so and pass, or fail when
//! KDTHIN_REQUIRE_TOOLS=1 (CI).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use super::store::{Lookup, Store};
use super::*;
use crate::exec::{Command as JobCommand, Executor, Job, JobError, JobOutcome};
use crate::input::bitcode::inline_asm;
use crate::input::embed::{embedded_files, Embeds};
use crate::plan::backend::BackendCommand;

const CLANG: &str = "clang-22";
const LLD: &str = "ld.lld-22";

fn have(tool: &str) -> bool {
    let ok = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("KDTHIN_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
            panic!("{tool} is not installed (and KDTHIN_REQUIRE_TOOLS=1)");
        }
        eprintln!("skipped: {tool} is not installed");
    }
    ok
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// ThinLTO bitcode as kbuild makes it, compiled in `dir`. The compile
/// already assembles module-level asm (for its symbol table), so the files
/// the tests' asm `.incbin`s must exist.
fn bitcode(dir: &Path, name: &str, src: &str, extra: &[&str]) -> PathBuf {
    for f in ["data.bin", "fn.bin", "kernel/config_data.gz"] {
        let p = dir.join(f);
        if !p.exists() {
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, f).unwrap();
        }
    }
    let c = dir.join(format!("{name}.c"));
    let o = dir.join(format!("{name}.o"));
    fs::write(&c, src).unwrap();
    let mut cmd = Command::new(CLANG);
    cmd.current_dir(dir).args(["-O2", "-flto=thin", "-fsplit-lto-unit", "-c"]).args(extra).arg(&c).arg("-o").arg(&o);
    run(&mut cmd);
    o
}

fn embeds_of(path: &Path) -> Embeds {
    embedded_files(&inline_asm(&fs::read(path).unwrap()).unwrap())
}

fn files(v: &[&str]) -> Embeds {
    Embeds::Files(v.iter().map(PathBuf::from).collect())
}

const MODULE_ASM: &str =
    "asm(\".pushsection .rodata\\n.incbin \\\"data.bin\\\"\\n.popsection\\n\");\nint f(void) { return 1; }\n";
const FUNCTION_ASM: &str =
    "int g(void) { asm volatile(\".pushsection .rodata\\n.incbin \\\"fn.bin\\\"\\n.popsection\"); return 2; }\n";
/// `.incbin` in data, not asm, and asm without it.
const NO_INCBIN: &str =
    "const char *s = \".incbin \\\"data.bin\\\"\";\nint h(void) { asm volatile(\"nop\"); return 3; }\n";

// ---- finding .incbin in real bitcode ----

#[test]
fn real_raw_bytes_hide_the_asm() {
    if !have(CLANG) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    for (name, src) in [("m", MODULE_ASM), ("f", FUNCTION_ASM)] {
        let data = fs::read(bitcode(t.path(), name, src, &[])).unwrap();
        // This is why a byte search cannot stand in for the reader.
        assert!(!data.windows(7).any(|w| w == b".incbin"), "{name}: asm text stored byte-aligned after all?");
        let asm = inline_asm(&data).unwrap();
        assert!(asm.iter().any(|a| a.windows(7).any(|w| w == b".incbin")), "{name}: reader missed the asm");
    }
}

#[test]
fn real_incbin_found_module_and_function_level() {
    if !have(CLANG) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert_eq!(embeds_of(&bitcode(d, "m", MODULE_ASM, &[])), files(&["data.bin"]));
    assert_eq!(embeds_of(&bitcode(d, "f", FUNCTION_ASM, &[])), files(&["fn.bin"]));
    assert_eq!(embeds_of(&bitcode(d, "n", NO_INCBIN, &[])), files(&[]));
    let both = format!("{MODULE_ASM}{FUNCTION_ASM}");
    assert_eq!(embeds_of(&bitcode(d, "b", &both, &[])), files(&["data.bin", "fn.bin"]));
    // Debug info puts most of the file in metadata blocks, which the
    // reader skips by length; -O0 keeps an asm-calling function's own
    // constants block.
    assert_eq!(embeds_of(&bitcode(d, "g", &both, &["-g"])), files(&["data.bin", "fn.bin"]));
    assert_eq!(embeds_of(&bitcode(d, "z", &both, &["-O0", "-g"])), files(&["data.bin", "fn.bin"]));
}

#[test]
fn real_ikconfig_source() {
    // kernel/configs.c's asm block as in 6.12, verbatim.
    if !have(CLANG) {
        return;
    }
    let src = r#"
asm (
"	.pushsection .rodata, \"a\"		\n"
"	.ascii \"IKCFG_ST\"			\n"
"	.global kernel_config_data		\n"
"kernel_config_data:				\n"
"	.incbin \"kernel/config_data.gz\"	\n"
"	.global kernel_config_data_end		\n"
"kernel_config_data_end:			\n"
"	.ascii \"IKCFG_ED\"			\n"
"	.popsection				\n"
);
extern char kernel_config_data, kernel_config_data_end;
long config_size(void) { return &kernel_config_data_end - &kernel_config_data; }
"#;
    let t = tempfile::tempdir().unwrap();
    assert_eq!(embeds_of(&bitcode(t.path(), "configs", src, &[])), files(&["kernel/config_data.gz"]));
}

#[test]
fn real_two_modules_in_one_file() {
    // With type metadata (CFI), -fsplit-lto-unit writes two modules into
    // one file; the asm can be in either.
    if !have(CLANG) {
        return;
    }
    let src = format!(
        "{MODULE_ASM}{FUNCTION_ASM}typedef int (*fp)(void); int call(fp p) {{ return p(); }}\nfp get(void) {{ return g; }}\n"
    );
    let t = tempfile::tempdir().unwrap();
    let o = bitcode(t.path(), "cfi", &src, &["-fsanitize=cfi-icall", "-fvisibility=hidden"]);
    let dump = Command::new("llvm-bcanalyzer-22").arg("-dump").arg(&o).output();
    if let Ok(d) = dump {
        let modules = String::from_utf8_lossy(&d.stdout).matches("<MODULE_BLOCK").count();
        assert_eq!(modules, 2, "expected a split LTO unit");
    }
    assert_eq!(embeds_of(&o), files(&["data.bin", "fn.bin"]));
}

#[test]
fn not_bitcode_is_an_error() {
    assert!(inline_asm(b"\x7fELF\x02\x01\x01").is_err());
    assert!(inline_asm(b"BC\xC0\xDE\xff\xff\xff").is_err());
    assert!(inline_asm(b"").is_err());
}

#[test]
fn real_truncated_bitcode_is_an_error() {
    if !have(CLANG) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let data = fs::read(bitcode(t.path(), "m", MODULE_ASM, &[])).unwrap();
    for cut in [data.len() / 3, data.len() / 2, data.len() - 5] {
        assert!(inline_asm(&data[..cut]).is_err(), "cut at {cut}");
    }
}

/// Scans every bitcode object of a built kernel tree: no errors, and how
/// fast. `KDTHIN_SCAN_TREE=/path/to/objtree cargo test --release --lib
/// kernel_tree_scan -- --ignored --nocapture`.
#[test]
#[ignore]
fn kernel_tree_scan() {
    let Some(root) = std::env::var_os("KDTHIN_SCAN_TREE") else { return };
    let out = Command::new("find").arg(&root).args(["-name", "*.o"]).output().unwrap();
    let files: Vec<(String, Vec<u8>)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|p| (p.to_string(), fs::read(p).unwrap()))
        .filter(|(_, d)| d.starts_with(b"BC\xC0\xDE"))
        .collect();
    let (n, bytes) = (files.len(), files.iter().map(|f| f.1.len()).sum::<usize>());
    let (mut with_asm, mut embeds) = (0, Vec::new());
    let start = std::time::Instant::now();
    for (p, data) in &files {
        let asm = inline_asm(data).unwrap_or_else(|e| panic!("{p}: {e}"));
        if let Some(list) = std::env::var_os("KDTHIN_SCAN_COUNTS") {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).create(true).open(list).unwrap();
            writeln!(f, "{p} {}", asm.len()).unwrap();
        }
        with_asm += usize::from(!asm.is_empty());
        if embedded_files(&asm) != Embeds::Files(vec![]) {
            embeds.push(p.to_string());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    for (_, data) in &files {
        blake3::hash(data);
    }
    let hash_secs = t.elapsed().as_secs_f64();
    println!(
        "{n} bitcode files, {} MB, {with_asm} with asm; scan {secs:.3}s ({:.0} MB/s), blake3 {hash_secs:.3}s; embeds: {embeds:?}",
        bytes >> 20,
        bytes as f64 / 1e6 / secs
    );
}

// ---- keys ----

/// A backend's files, with bitcode the reader accepts without clang: the
/// magic and zero padding (no blocks). Padding length varies the content.
struct Backend {
    dir: tempfile::TempDir,
    flags: Vec<&'static str>,
    out: PathBuf,
    index: PathBuf,
    bitcode: PathBuf,
    imports: Vec<PathBuf>,
}

fn fake_bitcode(path: &Path, n: usize) {
    let mut d = b"BC\xC0\xDE".to_vec();
    d.resize(4 + 4 * n, 0);
    fs::write(path, d).unwrap();
}

impl Backend {
    fn new() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("work/idx")).unwrap();
        let (index, bitcode, imp) = (d.join("work/idx/main.o.thinlto.bc"), d.join("main.o"), d.join("lib.o"));
        fs::write(&index, b"index shard").unwrap();
        fake_bitcode(&bitcode, 1);
        fake_bitcode(&imp, 2);
        let out = d.join("work/native/0.o");
        Backend { flags: vec!["-O2", "-mcmodel=kernel"], out, index, bitcode, imports: vec![imp], dir }
    }

    fn command(&self) -> BackendCommand {
        BackendCommand {
            compiler: "clang-22".into(),
            object_flags: self.flags.iter().map(OsString::from).collect(),
            link_flags: Arc::from([]),
            index: self.index.clone(),
            bitcode: self.bitcode.clone(),
            imports: self.imports.clone(),
            output: self.out.clone(),
        }
    }

    fn key_with(&self, cc: &CompilerId) -> Result<Key, NotCacheable> {
        let command = self.command();
        let inputs = KeyInputs { command: &command, cwd: self.dir.path() };
        // A fresh memo: within one link files do not change, here they do.
        Key::compute(&inputs, cc, &FileHashes::new())
    }

    fn key(&self) -> Key {
        self.key_with(&CompilerId::fake("clang 22")).unwrap()
    }
}

#[test]
fn key_ignores_per_link_paths() {
    let mut b = Backend::new();
    let k = b.key();
    assert_eq!(b.key(), k, "not deterministic");
    b.out = b.dir.path().join("elsewhere/7.o");
    assert_eq!(b.key(), k, "output path");
    // Another work directory: the same index shard under a new name.
    let index = b.dir.path().join("idx2");
    fs::copy(&b.index, &index).unwrap();
    b.index = index;
    assert_eq!(b.key(), k, "index path");
    // The module's own path is part of what clang is asked to compile.
    let bitcode = b.dir.path().join("copy.o");
    fs::copy(&b.bitcode, &bitcode).unwrap();
    b.bitcode = bitcode;
    assert_ne!(b.key(), k, "bitcode path");
}

#[test]
fn key_covers_every_input() {
    let b = Backend::new();
    let k = b.key();
    let mut seen = vec![k];
    let mut differs = |what: &str, key: Key| {
        assert!(!seen.contains(&key), "key did not change with {what}");
        seen.push(key);
    };

    fs::write(&b.index, b"another shard").unwrap();
    differs("index", b.key());
    fake_bitcode(&b.bitcode, 3);
    differs("bitcode", b.key());
    fake_bitcode(&b.imports[0], 4);
    differs("imported bitcode", b.key());

    let mut b2 = Backend::new();
    let base = b2.key();
    b2.imports.push(b2.bitcode.clone());
    assert_ne!(b2.key(), base, "one more import");
    b2.imports.pop();
    b2.flags = vec!["-O1", "-mcmodel=kernel"];
    assert_ne!(b2.key(), base, "flags");
    b2.flags = vec!["-mcmodel=kernel", "-O2"];
    assert_ne!(b2.key(), base, "flag order");
    b2.flags = vec!["-O2-mcmodel=kernel"];
    assert_ne!(b2.key(), base, "argument boundaries");
    b2.flags = vec!["-O2", "-mcmodel=kernel"];
    assert_eq!(b2.key(), base);
    assert_ne!(b2.key_with(&CompilerId::fake("clang 23")).unwrap(), base, "compiler");

    // A file named on the command line enters by content.
    let prof = b2.dir.path().join("prof.txt");
    fs::write(&prof, "profile 1").unwrap();
    b2.flags = vec!["-O2", "-mcmodel=kernel", "-fprofile-sample-use=prof.txt"];
    let with_prof = b2.key();
    fs::write(&prof, "profile 2").unwrap();
    assert_ne!(b2.key(), with_prof, "content of a file named in argv");
    b2.flags = vec!["-O2", "-fbasic-block-sections=list=prof.txt"];
    let with_list = b2.key();
    fs::write(&prof, "profile 3").unwrap();
    assert_ne!(b2.key(), with_list, "a file after the second `=`");
}

#[test]
fn unreadable_inputs_are_not_cacheable() {
    let b = Backend::new();
    fs::write(&b.imports[0], b"not bitcode").unwrap();
    assert!(b.key_with(&CompilerId::fake("cc")).is_err(), "import that is not bitcode");
    let b = Backend::new();
    fs::remove_file(&b.index).unwrap();
    assert!(b.key_with(&CompilerId::fake("cc")).is_err(), "missing index");
}

#[test]
fn real_key_covers_incbin_content() {
    if !have(CLANG) {
        return;
    }
    let mut b = Backend::new();
    let d = b.dir.path().to_path_buf();
    // kernel/configs.o: module-level asm.
    let cfg = d.join("kernel/config_data.gz");
    b.bitcode = bitcode(&d, "configs", "asm(\".incbin \\\"kernel/config_data.gz\\\"\");\n", &[]);
    fs::write(&cfg, "CONFIG_A=y").unwrap();
    let k1 = b.key();
    fs::write(&cfg, "CONFIG_A=n").unwrap();
    let k2 = b.key();
    assert_ne!(k1, k2, "the embedded config changed");
    fs::write(&cfg, "CONFIG_A=y").unwrap();
    assert_eq!(b.key(), k1);
    fs::remove_file(&cfg).unwrap();
    let why = b.key_with(&CompilerId::fake("cc")).unwrap_err();
    assert!(why.0.contains("kernel/config_data.gz"), "{why}");

    // Function-level asm in an imported module: the importer's key.
    let mut b = Backend::new();
    let d = b.dir.path().to_path_buf();
    b.imports = vec![bitcode(&d, "f", FUNCTION_ASM, &[])];
    fs::write(d.join("fn.bin"), "one").unwrap();
    let k1 = b.key();
    fs::write(d.join("fn.bin"), "two").unwrap();
    assert_ne!(b.key(), k1, "incbin of an imported function");
}

#[test]
fn real_compiler_identity() {
    if !have(CLANG) {
        return;
    }
    let id = CompilerId::probe(CLANG.as_ref(), &tools()).unwrap();
    assert!(id.description.contains("clang version"), "{}", id.description);
    let again = CompilerId::probe(CLANG.as_ref(), &tools()).unwrap();
    assert_eq!(id.digest, again.digest);
    let path = Command::new("sh").args(["-c", &format!("command -v {CLANG}")]).output().unwrap().stdout;
    let path = String::from_utf8(path).unwrap();
    // Another spelling of the same binary: still the driver's name
    // decides its mode, so the identity differs only if the name does.
    let by_path = CompilerId::probe(path.trim().as_ref(), &tools()).unwrap();
    assert_eq!(by_path.digest, id.digest);
    assert!(CompilerId::probe("kdthin-no-such-compiler".as_ref(), &tools()).is_err());
}

/// The assumptions behind the key, checked on a real thin-link: a backend's
/// output does not depend on its output or index path, and it does read
/// `.incbin` files of imported functions, relative to its working directory.
#[test]
fn real_backend_facts() {
    if !have(CLANG) || !have(LLD) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    bitcode(d, "a", "int g(void);\nint main(void) { return g(); }\n", &[]);
    bitcode(d, "f", FUNCTION_ASM, &[]);
    run(Command::new(LLD).current_dir(d).args([
        "-r",
        "--thinlto-index-only=list",
        "--thinlto-emit-imports-files",
        "a.o",
        "f.o",
        "-o",
        "out.o",
    ]));
    assert_eq!(fs::read_to_string(d.join("a.o.imports")).unwrap().trim(), "f.o");
    fs::create_dir(d.join("w")).unwrap();
    fs::copy(d.join("a.o.thinlto.bc"), d.join("w/other.bc")).unwrap();
    let backend = |index: &str, out: &str, cwd: &Path| {
        let mut c = Command::new(CLANG);
        c.current_dir(cwd)
            .args(["-O2", "-x", "ir", "-fno-lto"])
            .arg(format!("-fthinlto-index={index}"))
            .args(["-c", "-o", out, "a.o"]);
        run(&mut c);
    };
    fs::write(d.join("fn.bin"), "EMBEDDED-ONE").unwrap();
    backend("a.o.thinlto.bc", "n1.o", d);
    backend("w/other.bc", "w/n2.o", d);
    let n1 = fs::read(d.join("n1.o")).unwrap();
    assert_eq!(n1, fs::read(d.join("w/n2.o")).unwrap(), "output depends on paths");
    assert!(n1.windows(12).any(|w| w == b"EMBEDDED-ONE"), "imported function's .incbin not embedded");
    fs::write(d.join("fn.bin"), "EMBEDDED-TWO").unwrap();
    backend("a.o.thinlto.bc", "n3.o", d);
    assert!(fs::read(d.join("n3.o")).unwrap().windows(12).any(|w| w == b"EMBEDDED-TWO"));
    // The module is looked up in the index by its command-line name: the
    // same file under another spelling compiles to an empty object.
    let mut c = Command::new(CLANG);
    c.current_dir(d)
        .args(["-O2", "-x", "ir", "-fno-lto", "-fthinlto-index=a.o.thinlto.bc", "-c", "-o", "n4.o"])
        .arg(d.join("a.o"));
    run(&mut c);
    assert_ne!(fs::read(d.join("n4.o")).unwrap().len(), n1.len());
}

// ---- the store ----

/// The test process's PATH: where the real compilers are.
fn tools() -> crate::env::ToolEnv {
    crate::env::ToolEnv { path: std::env::var_os("PATH"), ccc_override: None }
}

fn settings(dir: &Path, max: u64) -> CacheSettings {
    CacheSettings { enabled: true, dir: Some(dir.to_path_buf()), max_size: max, warning: None, tools: tools() }
}

/// A key in shard `shard` (its first hex digit), distinct by `n`.
fn key_in(shard: u8, n: u32) -> Key {
    let mut k = *blake3::hash(&n.to_le_bytes()).as_bytes();
    k[0] = shard << 4 | (k[0] & 0x0f);
    Key(k)
}

fn object(dir: &Path, name: &str, len: usize, fill: u8) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, vec![fill; len]).unwrap();
    p
}

fn entries(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for s in fs::read_dir(root.join("v1")).unwrap().flatten().filter(|e| e.path().is_dir()) {
        for e in fs::read_dir(s.path()).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".tmp."), "temporary file left behind: {}", e.path().display());
            if name.len() == 64 {
                out.push((e.path(), e.metadata().unwrap().len()));
            }
        }
    }
    out
}

#[test]
fn a_hit_identical_to_the_installed_object_links_it() {
    let t = tempfile::tempdir().unwrap();
    let cache = Cache::try_open(&settings(&t.path().join("c"), 0)).unwrap().unwrap();
    let k = key_in(4, 1);
    cache.put(&k, &object(t.path(), "n.o", 1000, 7), b"");
    let installed = t.path().join("installed.o");
    let dest = t.path().join("tmp.o");
    // Installed differs (size, then content): the object goes to dest.
    fs::write(&installed, vec![7; 999]).unwrap();
    assert_eq!(cache.get(&k, &dest, Some(&installed), None).map(|h| h.unchanged), Some(false));
    assert_eq!(fs::read(&dest).unwrap(), vec![7; 1000]);
    fs::remove_file(&dest).unwrap();
    fs::write(&installed, [vec![7; 999], vec![8]].concat()).unwrap();
    assert_eq!(cache.get(&k, &dest, Some(&installed), None).map(|h| h.unchanged), Some(false));
    assert!(dest.exists());
    fs::remove_file(&dest).unwrap();
    // Installed holds exactly the object: a hit, and dest is a hard link
    // to it, nothing written.
    fs::write(&installed, vec![7; 1000]).unwrap();
    assert_eq!(cache.get(&k, &dest, Some(&installed), None).map(|h| h.unchanged), Some(true));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(&dest).unwrap().ino(), fs::metadata(&installed).unwrap().ino());
    // Another link then installs its own object by rename: ours, the
    // snapshot dest, is unchanged.
    let other = t.path().join("other.o");
    fs::write(&other, vec![9; 1000]).unwrap();
    fs::rename(&other, &installed).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), vec![7; 1000]);
}

#[test]
fn put_then_get() {
    let t = tempfile::tempdir().unwrap();
    let cache = Cache::try_open(&settings(&t.path().join("c"), 0)).unwrap().unwrap();
    let k = key_in(3, 1);
    let dest = t.path().join("dest.o");
    assert_eq!(cache.get(&k, &dest, None, None), None);
    cache.put(&k, &object(t.path(), "n.o", 1000, 7), b"warning: frame size\n");
    assert_eq!(cache.get(&k, &dest, None, None).map(|h| h.stderr).as_deref(), Some(&b"warning: frame size\n"[..]));
    assert_eq!(fs::read(&dest).unwrap(), vec![7; 1000]);
    let s = cache.link_stats();
    assert_eq!((s.hits, s.misses, s.stored), (1, 1, 1));
    assert!(t.path().join("c/CACHEDIR.TAG").exists());
}

/// Whole-link outputs: streamed in and out in 1 MiB blocks, so a size
/// that is not a multiple of the block and more than one block.
#[test]
fn put_file_then_get_file_and_damage() {
    let t = tempfile::tempdir().unwrap();
    let cache = Cache::try_open(&settings(&t.path().join("c"), 0)).unwrap().unwrap();
    let out: Vec<u8> = (0..(3 << 20) + 12345).map(|i| (i * 7 % 251) as u8).collect();
    let src = t.path().join("vmlinux.o");
    fs::write(&src, &out).unwrap();
    let k = key_in(5, 1);
    let dest = t.path().join("restored.o");
    assert_eq!(cache.get_link(&k, &dest), None);
    cache.put_link(&k, &src, b"{\"meta\":1}");
    assert_eq!(cache.get_link(&k, &dest).as_deref(), Some(&b"{\"meta\":1}"[..]));
    assert!(fs::read(&dest).unwrap() == out, "restored output differs");

    // A damaged entry is removed, never written to the destination.
    let entry = fs::read_dir(t.path().join("c/v1/5"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().len() == 64)
        .unwrap();
    let mut d = fs::read(&entry).unwrap();
    let mid = d.len() / 2;
    d[mid] ^= 1;
    fs::write(&entry, d).unwrap();
    fs::remove_file(&dest).unwrap();
    assert_eq!(cache.get_link(&k, &dest), None);
    assert!(!dest.exists() && !entry.exists(), "damaged entry used or kept");
    assert_eq!(cache.link_stats().corrupt, 1);
    // No temporaries left beside the destination.
    let strays: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(strays.is_empty(), "{strays:?}");
}

#[test]
fn corrupt_entries_are_discarded_never_used() {
    let t = tempfile::tempdir().unwrap();
    let cache = Cache::try_open(&settings(&t.path().join("c"), 0)).unwrap().unwrap();
    let native = object(t.path(), "n.o", 5000, 1);
    type Damage = fn(&Path);
    let damage: [(&str, Damage); 4] = [
        ("flipped byte", |p| {
            let mut d = fs::read(p).unwrap();
            let i = d.len() - 100;
            d[i] ^= 0x40;
            fs::write(p, d).unwrap();
        }),
        ("truncated", |p| {
            let d = fs::read(p).unwrap();
            fs::write(p, &d[..d.len() / 2]).unwrap();
        }),
        ("header only", |p| {
            let d = fs::read(p).unwrap();
            fs::write(p, &d[..20]).unwrap();
        }),
        ("empty", |p| fs::write(p, b"").unwrap()),
    ];
    for (n, (what, f)) in damage.iter().enumerate() {
        let k = key_in(5, n as u32);
        cache.put(&k, &native, b"");
        let path = t.path().join("c/v1/5").join(k.to_hex());
        f(&path);
        let dest = t.path().join(format!("d{n}.o"));
        assert_eq!(cache.get(&k, &dest, None, None), None, "{what}: served");
        assert!(!dest.exists(), "{what}: written to the destination");
        assert!(!path.exists(), "{what}: not removed");
        // Rebuilt: stored again, then served.
        cache.put(&k, &native, b"");
        assert!(cache.get(&k, &dest, None, None).is_some(), "{what}: not stored again");
    }
    assert_eq!(cache.link_stats().corrupt, 4);

    // A whole entry under another key's name (a stray `cp`) is no hit.
    let (a, b) = (key_in(6, 100), key_in(6, 101));
    cache.put(&a, &native, b"");
    fs::copy(t.path().join("c/v1/6").join(a.to_hex()), t.path().join("c/v1/6").join(b.to_hex())).unwrap();
    assert_eq!(cache.get(&b, &t.path().join("x.o"), None, None), None);
}

#[test]
fn concurrent_puts_from_threads() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("c");
    let native = object(t.path(), "n.o", 20_000, 9);
    let k = key_in(1, 1);
    std::thread::scope(|s| {
        for i in 0..8 {
            let (dir, native) = (&dir, &native);
            s.spawn(move || {
                // Each thread its own Cache, as separate links would have.
                let c = Cache::try_open(&settings(dir, 0)).unwrap().unwrap();
                for _ in 0..20 {
                    c.put(&k, native, b"");
                    let dest = native.with_file_name(format!("out{i}.o"));
                    if c.get(&k, &dest, None, None).is_some() {
                        assert_eq!(fs::read(&dest).unwrap(), vec![9; 20_000]);
                    }
                }
            });
        }
    });
    let c = Cache::try_open(&settings(&dir, 0)).unwrap().unwrap();
    assert!(c.get(&k, &t.path().join("final.o"), None, None).is_some());
    assert_eq!(entries(&dir).len(), 1);
}

/// Child side of `concurrent_puts_from_processes`.
#[test]
#[ignore]
fn child_puts() {
    let Some(dir) = std::env::var_os("KDTHIN_TEST_CACHE_CHILD") else { return };
    let dir = PathBuf::from(dir);
    let c = Cache::try_open(&settings(&dir, 64 << 10)).unwrap().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    for n in 0..60u32 {
        let k = key_in((n % 3) as u8, n);
        let native = object(scratch.path(), "n.o", 1000 + n as usize, n as u8);
        c.put(&k, &native, b"");
        let dest = scratch.path().join("d.o");
        if c.get(&k, &dest, None, None).is_some() {
            assert_eq!(fs::read(&dest).unwrap(), vec![n as u8; 1000 + n as usize]);
        }
    }
    assert!(!c.broken.load(Ordering::Relaxed));
}

#[test]
fn concurrent_puts_from_processes() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("c");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .args(["--exact", "cache::tests::child_puts", "--ignored", "--test-threads=1"])
                .env("KDTHIN_TEST_CACHE_CHILD", &dir)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every entry left is whole, and the shards fit their budget (64 KiB / 16).
    let store = Store::at(&dir, 64 << 10);
    for (path, _) in entries(&dir) {
        let k = Key(hex_key(&path));
        let dest = t.path().join("check.o");
        assert!(matches!(store.get(&k, &dest, None, &|_, _| true).unwrap(), Lookup::Hit { .. }), "{}", path.display());
    }
    for s in 0..3 {
        let real: u64 =
            entries(&dir).iter().filter(|(p, _)| p.parent().unwrap().ends_with(format!("{s:x}"))).map(|e| e.1).sum();
        assert!(real <= 4096, "shard {s} holds {real} bytes");
    }
}

fn hex_key(path: &Path) -> [u8; 32] {
    let h = path.file_name().unwrap().to_str().unwrap();
    let mut k = [0; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap();
    }
    k
}

#[test]
fn eviction_keeps_size_bound_and_recent_entries() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("c");
    let max = 16 * 10_000;
    let cache = Cache::try_open(&settings(&dir, max)).unwrap().unwrap();
    let native = object(t.path(), "n.o", 1900, 3);
    // Shard 0 (budget 10000): five entries of ~2 KB fit.
    let keys: Vec<Key> = (0..4).map(|n| key_in(0, n)).collect();
    for k in &keys {
        cache.put(k, &native, b"");
    }
    // Make their ages certain, oldest first, then use the oldest.
    let now = SystemTime::now();
    for (i, k) in keys.iter().enumerate() {
        let f = fs::File::options().write(true).open(dir.join("v1/0").join(k.to_hex())).unwrap();
        f.set_modified(now - Duration::from_secs(1000 - 10 * i as u64)).unwrap();
    }
    assert!(cache.get(&keys[0], &t.path().join("d.o"), None, None).is_some());
    // Two more: the second overflows the shard, and the cleanup brings it
    // down to 90% by evicting the two least recently used.
    for n in 4..6 {
        cache.put(&key_in(0, n), &native, b"");
        let held: u64 = entries(&dir).iter().map(|e| e.1).sum();
        assert!(held <= max / 16, "shard over budget: {held}");
    }
    let present = |k: &Key| dir.join("v1/0").join(k.to_hex()).exists();
    assert!(present(&keys[0]), "the recently used entry was evicted");
    assert!(!present(&keys[1]), "the least recently used entry survived");
    assert!(cache.link_stats().evicted > 0);

    // Across all shards: the total stays under the bound.
    for n in 100..400 {
        cache.put(&key_in((n % 16) as u8, n), &native, b"");
    }
    let held: u64 = entries(&dir).iter().map(|e| e.1).sum();
    assert!(held <= max, "cache holds {held} of {max}");
    let (counted, _) = Store::at(&dir, max).size();
    assert_eq!(counted, held, "size counters drifted");
}

#[test]
fn lost_counter_is_rebuilt() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("c");
    let cache = Cache::try_open(&settings(&dir, 0)).unwrap().unwrap();
    let native = object(t.path(), "n.o", 100, 3);
    cache.put(&key_in(2, 1), &native, b"");
    fs::write(dir.join("v1/2/size"), "garbage").unwrap();
    cache.put(&key_in(2, 2), &native, b"");
    let held: u64 = entries(&dir).iter().map(|e| e.1).sum();
    assert_eq!(Store::at(&dir, 0).size(), (held, 2));
}

#[test]
fn unwritable_cache_dir_means_no_cache() {
    let t = tempfile::tempdir().unwrap();
    let file = object(t.path(), "plain-file", 1, 0);
    // Under a regular file: fails even for root, unlike permission bits.
    let s = settings(&file.join("cache"), 0);
    assert!(Cache::try_open(&s).is_err());
    assert!(Cache::open(&s).is_none());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        let ro = t.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        assert!(Cache::try_open(&settings(&ro.join("c"), 0)).is_err());
    }
    let off = CacheSettings { enabled: false, ..settings(t.path(), 0) };
    assert!(Cache::try_open(&off).unwrap().is_none());
    let nowhere = CacheSettings { dir: None, ..settings(t.path(), 0) };
    assert!(Cache::open(&nowhere).is_none());
}

#[test]
fn cache_trouble_mid_link_degrades_to_no_cache() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("c");
    let cache = Cache::try_open(&settings(&dir, 0)).unwrap().unwrap();
    // The shard cannot be created: what a full disk or a revoked
    // permission looks like to a put.
    fs::write(dir.join("v1/4"), b"in the way").unwrap();
    let native = object(t.path(), "n.o", 100, 1);
    cache.put(&key_in(4, 1), &native, b"");
    assert!(cache.broken.load(Ordering::Relaxed));
    // From now on: no lookups, no stores, no errors.
    cache.put(&key_in(5, 1), &native, b"");
    assert_eq!(cache.get(&key_in(5, 1), &t.path().join("d.o"), None, None), None);
    assert_eq!(cache.link_stats().stored, 0);
}

#[test]
fn stats_and_clear() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("c");
    let s = settings(&dir, 1 << 30);
    assert_eq!(stats(&s).unwrap().files, 0, "a cache that does not exist yet");
    let native = object(t.path(), "n.o", 3000, 1);
    for round in 0..2 {
        let cache = Cache::open(&s).unwrap();
        for n in 0..10 {
            let k = key_in(n as u8, n);
            if cache.get(&k, &t.path().join("d.o"), None, None).is_none() {
                cache.put(&k, &native, b"");
            }
        }
        let ls = cache.link_stats();
        assert_eq!((ls.hits, ls.misses), if round == 0 { (0, 10) } else { (10, 0) });
    } // dropped: totals persisted
    let st = stats(&s).unwrap();
    assert_eq!((st.hits, st.misses, st.stored, st.files), (10, 10, 10, 10));
    assert!(st.size > 30_000);
    assert!(st.to_string().contains("50.0%"), "{st}");
    clear(&s).unwrap();
    let st = stats(&s).unwrap();
    assert_eq!((st.files, st.size, st.hits), (0, 0, 10));
    assert!(entries(&dir).is_empty());
    zero_stats(&s).unwrap();
    assert_eq!(stats(&s).unwrap().hits, 0);
}

// ---- settings ----

#[test]
fn settings_from_environment() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
    };
    let cwd = Some(Path::new("/build"));
    let s = CacheSettings::from_vars(vars(&[("HOME", "/home/u")]), cwd);
    assert_eq!(
        s,
        CacheSettings {
            enabled: true,
            dir: Some("/home/u/.cache/kdthin".into()),
            max_size: 5 << 30,
            warning: None,
            tools: Default::default()
        }
    );
    let s = CacheSettings::from_vars(vars(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")]), cwd);
    assert_eq!(s.dir, Some("/xdg/kdthin".into()));
    let s = CacheSettings::from_vars(vars(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "rel")]), cwd);
    assert_eq!(s.dir, Some("/home/u/.cache/kdthin".into()), "relative XDG_CACHE_HOME is ignored");
    let s = CacheSettings::from_vars(vars(&[("KDTHIN_CACHE_DIR", "c"), ("KDTHIN_CACHE_SIZE", "500M")]), cwd);
    assert_eq!((s.dir, s.max_size), (Some("/build/c".into()), 500 << 20));
    assert!(!CacheSettings::from_vars(vars(&[("HOME", "/h"), ("KDTHIN_CACHE", "off")]), cwd).enabled);
    assert!(CacheSettings::from_vars(vars(&[("HOME", "/h"), ("KDTHIN_CACHE", "1")]), cwd).enabled);
    assert_eq!(CacheSettings::from_vars(vars(&[]), cwd).dir, None);
    let s = CacheSettings::from_vars(vars(&[("HOME", "/h"), ("KDTHIN_CACHE_SIZE", "lots")]), cwd);
    assert_eq!(s.max_size, 5 << 30);
    assert!(s.warning.is_some());
}

#[test]
fn sizes() {
    assert_eq!(parse_size("5G"), Some(5 << 30));
    assert_eq!(parse_size("500M"), Some(500 << 20));
    assert_eq!(parse_size("64KiB"), Some(64 << 10));
    assert_eq!(parse_size("1.5g"), Some(3 << 29));
    assert_eq!(parse_size("123"), Some(123));
    assert_eq!(parse_size("0"), Some(0));
    assert_eq!(parse_size("5X"), None);
    assert_eq!(parse_size(""), None);
    assert_eq!(parse_size("-1G"), None);
}

// ---- the executor adapter ----

/// Writes each job's output and counts runs; fails when told to.
struct FakeBackend {
    runs: AtomicUsize,
    fail: bool,
}

impl Executor for FakeBackend {
    fn run(&self, job: &Job) -> Result<JobOutcome, JobError> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        if self.fail {
            return Err(JobError::Failed { status: "exit status 1".into(), stderr: b"error\n".to_vec() });
        }
        fs::write(job.command.output().unwrap(), b"native object").unwrap();
        Ok(JobOutcome {
            id: job.id,
            wall: Duration::ZERO,
            ran_on: "local",
            stderr: b"warning: w\n".to_vec(),
            already_installed: false,
        })
    }
}

#[test]
fn caching_executor() {
    let b = Backend::new();
    // The compiler is probed for real (`--version`): `true` answers
    // anything with success.
    let t = tempfile::tempdir().unwrap();
    let cache = Cache::try_open(&settings(&t.path().join("c"), 0)).unwrap().unwrap();
    let command = BackendCommand { compiler: "true".into(), ..b.command() };
    fs::create_dir_all(b.out.parent().unwrap()).unwrap();
    let job = Job { weight: 1, command: JobCommand::Backend(command), ..Job::plain(0, "main.o", vec![]) };
    let failing = CachingExecutor {
        inner: FakeBackend { runs: AtomicUsize::new(0), fail: true },
        cache: &cache,
        cwd: b.dir.path().into(),
    };
    assert!(failing.run(&job).is_err());
    let exec = CachingExecutor {
        inner: FakeBackend { runs: AtomicUsize::new(0), fail: false },
        cache: &cache,
        cwd: b.dir.path().into(),
    };
    assert_eq!(exec.run(&job).unwrap().ran_on, "local", "a failed backend was cached");
    fs::remove_file(&b.out).unwrap();
    let hit = exec.run(&job).unwrap();
    assert_eq!((hit.ran_on, hit.stderr.as_slice()), ("cache", &b"warning: w\n"[..]));
    assert_eq!(fs::read(&b.out).unwrap(), b"native object");
    assert_eq!(exec.inner.runs.load(Ordering::Relaxed), 1);
    // A backend job checks its object: this entry ("native object", as an
    // older kdthin-ld could have stored a 0-byte one) is not an ELF
    // object, so it is removed and the backend runs again.
    let mut checked = job.clone();
    checked.check = Some(crate::exec::verify::NativeCheck::default());
    assert_eq!(exec.run(&checked).unwrap().ran_on, "local", "an unusable entry was served");
    assert_eq!(exec.inner.runs.load(Ordering::Relaxed), 2);
    assert_eq!(cache.link_stats().corrupt, 1);
}

//! The backend cache (src/cache), black-box: the fixture's make with
//! `LD=kdthin-ld` and a cache directory of the test's own, real clang and
//! ld.lld. Each test checks what the link's `LTO` line counts and what it
//! produced, against ld.lld's in-process ThinLTO on the same inputs.
//!
//! Modelled on ccache's distributed_thinlto_clang suite: change one input
//! of one backend, and exactly the backends that read it miss.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::support::*;

/// A fixture tree and a backend cache next to it (so a failed test keeps
/// both, and no test is served from another's entries).
struct Cached {
    t: Tree,
    dir: PathBuf,
    /// The bitcode modules the vmlinux.o and prog links compile.
    used: Vec<String>,
    /// Let the whole-link cache (link memo) serve links. Off by default:
    /// these tests are about the backends, which a memo hit skips.
    memo: bool,
}

impl Cached {
    /// A clean copy of the fixture and an empty cache (not created yet).
    fn new() -> Cached {
        let t = Tree::new(CmdFormat::Savedcmd);
        let dir = t.scratch().join("cache");
        let used = VMLINUX_BITCODE.iter().map(|s| s.to_string()).collect();
        Cached { t, dir, used, memo: false }
    }

    /// The fixture plus kernel/configs.o, which embeds kernel/cfg.bin with
    /// an asm `.incbin`, like the kernel's IKCONFIG (kernel/configs.c
    /// embeds kernel/config_data.gz). As in kernel/Makefile, configs.o
    /// depends on the embedded file, so changing it recompiles configs.o,
    /// which gives the same bitcode: the bitcode only names the file.
    fn with_configs() -> Cached {
        let mut c = Cached::new();
        c.t.write("kernel/configs.c", CONFIGS_C);
        c.t.write("kernel/cfg.bin", CFG_V1);
        c.t.edit("Makefile", |s| {
            s.replace(
                "obj-kernel := kernel/printk.o kernel/sched.o\n",
                "obj-kernel := kernel/printk.o kernel/sched.o kernel/configs.o\n\
                 kernel/configs.o: kernel/cfg.bin\n",
            )
        });
        c.used.push("kernel/configs.o".into());
        c
    }

    fn n(&self) -> usize {
        self.used.len()
    }

    fn env(&self) -> Vec<(&'static str, &OsStr)> {
        let memo: &OsStr = if self.memo { "on".as_ref() } else { "off".as_ref() };
        vec![("KDTHIN_CACHE", "on".as_ref()), ("KDTHIN_CACHE_DIR", self.dir.as_os_str()), ("KDTHIN_LINK_CACHE", memo)]
    }

    /// `rm -f TARGET; make TARGET` with LD=kdthin-ld and this test's cache
    /// (plus `extra` in the environment). Rebuilds whatever changed first.
    fn link_with(&self, target: &str, extra: &[(&str, &OsStr)]) -> (LtoLine, Ran) {
        if self.t.exists(target) {
            self.t.remove(target);
        }
        let mut env = self.env();
        env.extend_from_slice(extra);
        let ran = self.t.make_with(Linker::Kdthin, &[target], &env).ok();
        let line = ran.lto_line(target);
        assert_eq!(
            line.cached + line.compiled,
            self.n(),
            "{target} should run a backend (or cache lookup) for each of {:?}: {line:?}",
            self.used
        );
        (line, ran)
    }

    fn link(&self, target: &str) -> LtoLine {
        self.link_with(target, &[]).0
    }

    /// A vmlinux.o link that keeps its work files, and which modules each
    /// module imports from, read from the thin-link's `<module>.imports`
    /// files. The kept directories are removed again.
    fn link_reading_imports(&self) -> (LtoLine, Imports) {
        let (line, ran) = self.link_with("vmlinux.o", &[("KDTHIN_SAVE_TEMPS", "1".as_ref())]);
        let kept: Vec<PathBuf> = ran
            .stderr
            .lines()
            .filter_map(|l| l.strip_prefix("kdthin-ld: work files kept in "))
            .map(|d| self.t.root().join(d))
            .collect();
        assert!(!kept.is_empty(), "KDTHIN_SAVE_TEMPS=1 named no work dir\n{}", ran.report());
        let mut imports = Imports::new();
        for dir in &kept {
            for rel in Snapshot::take(dir).paths() {
                let Some(module) = rel.to_str().and_then(|r| r.strip_suffix(".imports")) else {
                    continue;
                };
                if !self.used.iter().any(|u| u == module) {
                    continue; // lib/unused.o: not in the link
                }
                let text = fs::read_to_string(dir.join(rel)).expect("read .imports");
                let from = text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
                imports.insert(module.to_string(), from);
            }
        }
        for dir in &kept {
            fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
        }
        let have: Vec<&String> = imports.keys().collect();
        assert_eq!(have.len(), self.n(), "no .imports file for some of {:?}: {have:?}", self.used);
        (line, imports)
    }

    /// Cache entries: `<dir>/v1/<shard>/<64 hex digits>`.
    fn entries(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(shards) = fs::read_dir(self.dir.join("v1")) else {
            return out;
        };
        for shard in shards.flatten().filter(|s| s.path().is_dir()) {
            for e in fs::read_dir(shard.path()).expect("read shard").flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    /// Files in the shards that are neither entries nor bookkeeping:
    /// temporaries a link left behind.
    fn strays(&self) -> Vec<PathBuf> {
        let entries = self.entries();
        let mut out = Vec::new();
        let Ok(shards) = fs::read_dir(self.dir.join("v1")) else {
            return out;
        };
        for shard in shards.flatten().filter(|s| s.path().is_dir()) {
            for e in fs::read_dir(shard.path()).expect("read shard").flatten() {
                let name = e.file_name();
                if !entries.contains(&e.path()) && name != "size" && name != "lock" {
                    out.push(e.path());
                }
            }
        }
        out
    }

    /// Identity of each module's native object. A cache hit whose object
    /// is already in place leaves that file alone, and a compiled object
    /// is renamed into place: so between two links, the natives rewritten
    /// are exactly the modules compiled (when nothing else changed them).
    fn natives(&self) -> Natives {
        self.used
            .iter()
            .map(|m| {
                let md = fs::metadata(self.t.path(&native_object(m)))
                    .unwrap_or_else(|e| panic!("no native object for {m}: {e}"));
                (m.clone(), (md.ino(), md.modified().expect("mtime")))
            })
            .collect()
    }

    fn rewritten_since(&self, before: &Natives) -> BTreeSet<String> {
        let now = self.natives();
        now.into_iter().filter(|(m, id)| before.get(m) != Some(id)).map(|(m, _)| m).collect()
    }

    fn native_bytes(&self) -> BTreeMap<String, Vec<u8>> {
        self.used.iter().map(|m| (m.clone(), self.t.read(&native_object(m)))).collect()
    }
}

type Imports = BTreeMap<String, Vec<String>>;
type Natives = BTreeMap<String, (u64, SystemTime)>;

/// The backends that must miss after `module`'s source changes: its own
/// and those of every module that imports from it.
fn affected_by(imports: &Imports, module: &str) -> BTreeSet<String> {
    imports
        .iter()
        .filter(|(m, from)| *m == module || from.iter().any(|f| f == module))
        .map(|(m, _)| m.clone())
        .collect()
}

#[track_caller]
fn assert_counts(line: &LtoLine, cached: usize, compiled: usize, why: &str) {
    assert_eq!(
        (line.cached, line.compiled),
        (cached, compiled),
        "{why}: expected {cached} cached, {compiled} compiled; got {line:?}"
    );
}

/// ld.lld's in-process ThinLTO on the tree's current inputs, written
/// beside the link's own output as `<target>.ref`.
fn reference(t: &Tree, target: &str) -> String {
    let out = format!("{target}.ref");
    let mut argv = t.link_argv(target, Linker::Lld);
    let o = argv.iter().position(|a| a == "-o").expect("-o in the link command");
    argv[o + 1] = OsString::from(&out);
    t.run_linker(&argv, &[]).ok();
    out
}

/// vmlinux.o has the reference's symbols and prog prints what the
/// reference prints (stale code in any native object would show there).
/// Returns prog's output.
#[track_caller]
fn assert_same_as_reference(t: &Tree) -> String {
    let vm = reference(t, "vmlinux.o");
    assert_same_lines(
        "defined globals of vmlinux.o",
        &defined_globals(&t.path(&vm)),
        &defined_globals(&t.path("vmlinux.o")),
    );
    let prog = reference(t, "prog");
    let (want, got) = (t.run_program(&prog), t.run_program("prog"));
    assert_eq!(got, want, "prog's output differs from ld.lld's in-process ThinLTO");
    got
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn relink_with_nothing_changed_is_all_cached() {
    require_toolchain!();
    let c = Cached::new();
    let n = c.n();
    assert_counts(&c.link("vmlinux.o"), 0, n, "cold cache");
    assert_eq!(c.entries().len(), n, "one entry per backend: {:?}", c.entries());
    c.link("prog");
    assert_eq!(assert_same_as_reference(&c.t), PROG_OUTPUT);
    let (vmlinux_o, prog) = (c.t.read("vmlinux.o"), c.t.read("prog"));
    let natives = c.natives();

    assert_counts(&c.link("vmlinux.o"), n, 0, "relink, nothing changed");
    assert_counts(&c.link("prog"), n, 0, "relink of prog, nothing changed");
    assert!(c.t.read("vmlinux.o") == vmlinux_o, "vmlinux.o from cached objects is not byte-identical");
    assert!(c.t.read("prog") == prog, "prog from cached objects is not byte-identical");
    let rewritten = c.rewritten_since(&natives);
    assert!(rewritten.is_empty(), "cache hits rewrote native objects already in place: {rewritten:?}");
    assert_eq!(c.entries().len(), n, "hits added entries");

    // KDTHIN_CACHE=off: every backend runs, the cache is not touched.
    let entries: Vec<(PathBuf, Vec<u8>)> =
        c.entries().into_iter().map(|p| (p.clone(), fs::read(&p).unwrap())).collect();
    let (off, _) = c.link_with("vmlinux.o", &[("KDTHIN_CACHE", "off".as_ref())]);
    assert_counts(&off, 0, n, "KDTHIN_CACHE=off");
    let after: Vec<(PathBuf, Vec<u8>)> = c.entries().into_iter().map(|p| (p.clone(), fs::read(&p).unwrap())).collect();
    assert!(after == entries, "KDTHIN_CACHE=off changed the cache");
    assert!(c.t.read("vmlinux.o") == vmlinux_o, "vmlinux.o without the cache differs");
}

#[test]
fn source_edits_miss_the_module_and_its_importers() {
    require_toolchain!();
    let c = Cached::new();
    let n = c.n();
    let (cold, imports) = c.link_reading_imports();
    assert_counts(&cold, 0, n, "cold cache");
    c.link("prog");
    assert_same_as_reference(&c.t);

    // A module nothing imports from: only its backend misses.
    let leaf = "kernel/printk.o";
    let expected = affected_by(&imports, leaf);
    assert_eq!(
        expected,
        BTreeSet::from([leaf.to_string()]),
        "premise: nothing imports from {leaf}; imports: {imports:#?}"
    );
    let before = c.natives();
    c.t.edit("kernel/printk.c", |s| s.replace(r#"printk(" = ");"#, r#"printk(" := ");"#));
    let line = c.link("vmlinux.o");
    assert_counts(&line, n - 1, 1, &format!("after editing {leaf}'s source"));
    assert_eq!(c.rewritten_since(&before), expected, "compiled backends");
    c.link("prog");
    let out = assert_same_as_reference(&c.t);
    assert!(out.contains("sched_scale(7) := 21\n"), "edit of {leaf} not in prog:\n{out}");

    // A module others import from (and inline: -O2): its importers miss too.
    let imported = "kernel/sched.o";
    let expected = affected_by(&imports, imported);
    assert!(expected.len() > 1, "premise: some module imports from {imported}; imports: {imports:#?}");
    let before = c.natives();
    c.t.edit("kernel/sched.c", |s| s.replace("return x * SCALE;", "return x * SCALE + 1000;"));
    let line = c.link("vmlinux.o");
    assert_counts(
        &line,
        n - expected.len(),
        expected.len(),
        &format!("after editing {imported}'s source, {expected:?} must miss"),
    );
    assert_eq!(c.rewritten_since(&before), expected, "compiled backends");
    c.link("prog");
    let out = assert_same_as_reference(&c.t);
    assert!(out.contains("sched_scale(7) := 1021\n"), "edit of {imported} not in prog:\n{out}");
}

/// The whole-link cache: make re-running a link whose inputs did not
/// change gets the output from the cache, and any change that reaches the
/// output (a flag in a .cmd, an .incbin'd file, the compiler) takes the
/// normal path again. A hit leaves the natives of the output it served
/// beside the bitcode, putting back any that another link replaced or
/// that went missing.
#[test]
fn whole_link_cache_serves_only_unchanged_links() {
    require_toolchain!();
    let mut c = Cached::with_configs();
    c.memo = true;
    let n = c.n();
    let whole = |l: &LtoLine, yes: bool, why: &str| {
        assert_eq!(l.whole_link, yes, "{why}: whole link cached should be {yes}: {l:?}");
        if yes {
            assert_counts(l, n, 0, why);
        }
    };
    whole(&c.link("vmlinux.o"), false, "cold cache");
    let entries = c.entries();
    assert_eq!(entries.len(), n + 1, "one entry per backend plus the whole link: {entries:?}");
    let first = c.t.read("vmlinux.o");
    let mode = fs::metadata(c.t.path("vmlinux.o")).unwrap().permissions().mode();

    // `link` removes vmlinux.o first: the memo puts it back, byte for byte.
    let (line, ran) = c.link_with("vmlinux.o", &[("KDTHIN_REPORT", c.t.scratch().join("r.jsonl").as_os_str())]);
    whole(&line, true, "relink, nothing changed");
    assert!(c.t.read("vmlinux.o") == first, "vmlinux.o from the whole-link cache differs");
    assert_eq!(fs::metadata(c.t.path("vmlinux.o")).unwrap().permissions().mode(), mode, "mode of vmlinux.o");
    assert!(ran.stderr.trim().is_empty(), "stderr on a whole-link hit: {}", ran.stderr);
    let report = fs::read_to_string(c.t.scratch().join("r.jsonl")).unwrap();
    assert!(report.contains("\"link_cached\":true"), "report: {report}");
    assert_eq!(c.entries(), entries, "a hit added entries");
    c.link("prog");
    assert_same_as_reference(&c.t);

    // Recompiled to the same bitcode (a touched source): still a hit.
    let src = c.t.path("kernel/sched.c");
    let later = fs::metadata(&src).unwrap().modified().unwrap() + Duration::from_secs(5);
    fs::File::options().write(true).open(&src).unwrap().set_modified(later).unwrap();
    whole(&c.link("vmlinux.o"), true, "kernel/sched.c touched, same bitcode");

    // A flag in one .cmd (the bitcode stays the same).
    c.t.edit(&Tree::cmd_file("mm/slab.o"), |s| s.replacen(" -Wall ", " -ffunction-sections ", 1));
    let l = c.link("vmlinux.o");
    whole(&l, false, "flag changed in mm/slab.o's .cmd");
    assert_counts(&l, n - 1, 1, "flag changed in mm/slab.o's .cmd");
    whole(&c.link("vmlinux.o"), true, "relink after the flag change");
    let flagged = c.t.read("vmlinux.o");
    assert!(flagged != first, "premise: -ffunction-sections in mm/slab.o changes vmlinux.o");
    let native_bytes = |c: &Cached| -> Vec<(String, Vec<u8>)> {
        c.used.iter().map(|m| (m.clone(), c.t.read(&native_object(m)))).collect()
    };
    let flagged_natives = native_bytes(&c);

    // The .incbin'd file (the bitcode only names it).
    c.t.write("kernel/cfg.bin", CFG_V2);
    whole(&c.link("vmlinux.o"), false, "kernel/cfg.bin changed");
    assert!(contains(&c.t.read("vmlinux.o"), CFG_V2.as_bytes()), "vmlinux.o lacks the new kernel/cfg.bin");
    assert!(native_bytes(&c) != flagged_natives, "premise: the CFG_V2 link installed other natives");
    c.t.write("kernel/cfg.bin", CFG_V1);
    whole(&c.link("vmlinux.o"), true, "kernel/cfg.bin changed back");
    assert!(c.t.read("vmlinux.o") == flagged, "vmlinux.o after changing kernel/cfg.bin back");
    // The hit served the CFG_V1 output: the natives beside the bitcode are
    // that output's again (put back from the backend cache), not the
    // CFG_V2 link's that were there.
    assert!(native_bytes(&c) == flagged_natives, "a whole-link hit left another link's natives in the tree");

    // A native object gone: the hit puts it back (from the backend cache).
    let native = native_object("kernel/sched.o");
    c.t.remove(&native);
    whole(&c.link("vmlinux.o"), true, "a native object removed");
    assert!(c.t.exists(&native), "{native} not recreated");
    assert!(native_bytes(&c) == flagged_natives, "{native} recreated with other content");

    // A damaged entry is never served: the link runs, the output is right.
    let memo_entry = c
        .entries()
        .into_iter()
        .find(|p| contains(&fs::read(p).unwrap(), &flagged))
        .expect("an entry holding the current vmlinux.o");
    let mut bytes = fs::read(&memo_entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&memo_entry, bytes).unwrap();
    whole(&c.link("vmlinux.o"), false, "whole-link entry damaged");
    assert!(c.t.read("vmlinux.o") == flagged, "vmlinux.o after a damaged whole-link entry");
    whole(&c.link("vmlinux.o"), true, "relink after the damaged entry was replaced");
    c.link("prog");
    assert_same_as_reference(&c.t);
}

#[test]
fn a_flag_change_in_one_cmd_file_misses_only_that_object() {
    require_toolchain!();
    let c = Cached::new();
    let n = c.n();
    assert_counts(&c.link("vmlinux.o"), 0, n, "cold cache");
    c.link("prog");
    // kbuild would recompile mm/slab.o after a flag change; with this flag
    // its bitcode stays the same, so editing the .cmd alone is the whole
    // change (the .cmd stays newer than the object). One flag replaces
    // another (-Wall means nothing to a backend): the same number of
    // arguments, only one argument's text differs.
    let obj = "mm/slab.o";
    let native = native_object(obj);
    let has_fn_section = |c: &Cached| section_names(&c.t.path(&native)).iter().any(|s| s == ".text.slab_objects");
    assert!(!has_fn_section(&c), "premise: {native} built without -ffunction-sections");
    let before = c.natives();
    c.t.edit(&Tree::cmd_file(obj), |s| {
        assert_eq!(s.matches(" -Wall ").count(), 1, "premise: one -Wall in {s}");
        s.replacen(" -Wall ", " -ffunction-sections ", 1)
    });
    let line = c.link("vmlinux.o");
    assert_counts(&line, n - 1, 1, &format!("after changing a flag in {obj}'s .cmd"));
    assert_eq!(c.rewritten_since(&before), BTreeSet::from([obj.to_string()]), "compiled backends");
    assert!(has_fn_section(&c), "{native} was not compiled with the new flag");
    c.link("prog");
    assert_eq!(assert_same_as_reference(&c.t), PROG_OUTPUT);
}

#[test]
fn another_compiler_misses_everything() {
    require_toolchain!();
    let c = Cached::new();
    let n = c.n();
    assert_counts(&c.link("vmlinux.o"), 0, n, "cold cache");
    c.link("prog");
    let clang = run(Command::new("sh").args(["-c", &format!("command -v {CLANG}")])).ok().stdout.trim().to_string();
    let bin = c.t.scratch().join("bin");
    fs::create_dir_all(&bin).unwrap();
    // The same clang under another name (clang takes its driver mode from
    // its name).
    let alias = bin.join(format!("{CLANG}-alias"));
    std::os::unix::fs::symlink(&clang, &alias).unwrap();
    // A compiler of the same name and version elsewhere (a wrapper script;
    // as far as the cache can tell, another installation).
    let wrapper = bin.join(CLANG);
    fs::write(&wrapper, format!("#!/bin/sh\nexec {clang} \"$@\"\n")).unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();

    // Every .cmd names the compiler as `<prefix><target> := <compiler> ...`.
    let mut current = CLANG.to_string();
    let mut use_compiler = |to: &Path| {
        let to = to.display().to_string();
        for obj in &c.used {
            c.t.edit(&Tree::cmd_file(obj), |s| s.replacen(&format!(":= {current} "), &format!(":= {to} "), 1));
        }
        current = to;
    };
    for (what, compiler) in
        [("the same clang under another name", &alias), ("a compiler of the same name in another place", &wrapper)]
    {
        use_compiler(compiler);
        assert_counts(&c.link("vmlinux.o"), 0, n, &format!("{what} in every .cmd"));
        c.link("prog");
        assert_eq!(assert_same_as_reference(&c.t), PROG_OUTPUT, "{what}");
        assert_counts(&c.link("vmlinux.o"), n, 0, &format!("relink with {what}"));
    }
    // Reinstalled in place: same name, path, size and version, a new mtime.
    let t = fs::metadata(&wrapper).unwrap().modified().unwrap();
    fs::File::options().write(true).open(&wrapper).and_then(|f| f.set_modified(t + Duration::from_secs(60))).unwrap();
    assert_counts(&c.link("vmlinux.o"), 0, n, "compiler reinstalled (new mtime)");
    c.link("prog");
    assert_eq!(assert_same_as_reference(&c.t), PROG_OUTPUT);
    // The first compiler's entries are still there.
    use_compiler(Path::new(CLANG));
    assert_counts(&c.link("vmlinux.o"), n, 0, "back to the first compiler");
    c.link("prog");
    assert_eq!(assert_same_as_reference(&c.t), PROG_OUTPUT);
}

const CONFIGS_C: &str = r#"// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
/* Like kernel/configs.c (IKCONFIG): the asm embeds a file that the bitcode
 * only names. */
#include "mini.h"

asm(".section .rodata, \"a\"\n"
    ".global cfg_data\n"
    "cfg_data:\n"
    ".incbin \"kernel/cfg.bin\"\n"
    ".global cfg_end\n"
    "cfg_end:\n"
    ".previous\n");

extern const char cfg_data[], cfg_end[];

static int configs_init(void)
{
	mini_write(1, cfg_data, cfg_end - cfg_data);
	return 0;
}
device_initcall(configs_init);
"#;
/// Two contents of kernel/cfg.bin, of the same size.
const CFG_V1: &str = "CONFIG_MINI_MARKER=1111\n";
const CFG_V2: &str = "CONFIG_MINI_MARKER=2222\n";

#[test]
fn incbin_content_is_part_of_the_key() {
    require_toolchain!();
    let c = Cached::with_configs();
    let n = c.n();
    let obj = "kernel/configs.o";
    assert_counts(&c.link("vmlinux.o"), 0, n, "cold cache");
    c.link("prog");
    let out = assert_same_as_reference(&c.t);
    assert!(out.contains(CFG_V1), "prog does not print kernel/cfg.bin:\n{out}");
    let bitcode = c.t.read(obj);
    let before = c.natives();

    c.t.write("kernel/cfg.bin", CFG_V2);
    let line = c.link("vmlinux.o");
    assert!(c.t.read(obj) == bitcode, "premise: {obj}'s bitcode does not change with kernel/cfg.bin");
    assert_counts(&line, n - 1, 1, "after changing only the .incbin'd file");
    assert_eq!(c.rewritten_since(&before), BTreeSet::from([obj.to_string()]), "compiled backends");
    let vmlinux_o = c.t.read("vmlinux.o");
    assert!(
        contains(&vmlinux_o, CFG_V2.as_bytes()) && !contains(&vmlinux_o, CFG_V1.as_bytes()),
        "vmlinux.o does not embed the new kernel/cfg.bin"
    );
    c.link("prog");
    let out = assert_same_as_reference(&c.t);
    assert!(out.contains(CFG_V2) && !out.contains(CFG_V1), "stale kernel/cfg.bin in prog:\n{out}");

    // Content-addressed: the first content's object is still cached.
    c.t.write("kernel/cfg.bin", CFG_V1);
    assert_counts(&c.link("vmlinux.o"), n, 0, "kernel/cfg.bin changed back");
    c.link("prog");
    let out = assert_same_as_reference(&c.t);
    assert!(out.contains(CFG_V1) && !out.contains(CFG_V2), "stale kernel/cfg.bin in prog:\n{out}");
}

/// Why the test above matters: ld.lld's own ThinLTO cache keys a backend
/// on the bitcode and the index only, and serves the old kernel/cfg.bin.
/// If this starts failing, LLVM has fixed that; nothing is wrong with
/// kdthin-ld.
#[test]
fn lld_thinlto_cache_serves_a_stale_incbin() {
    require_toolchain!();
    let c = Cached::with_configs();
    c.t.make(Linker::Lld, &["vmlinux.a", "lib/lib.a"]).ok();
    let mut argv = c.t.link_argv("prog", Linker::Lld);
    let o = argv.iter().position(|a| a == "-o").expect("-o in the link command");
    argv[o + 1] = "prog.lld".into();
    let mut dir = OsString::from("--thinlto-cache-dir=");
    dir.push(c.t.scratch().join("lld-cache"));
    argv.push(dir);
    c.t.run_linker(&argv, &[]).ok();
    assert!(c.t.run_program("prog.lld").contains(CFG_V1));
    c.t.write("kernel/cfg.bin", CFG_V2);
    c.t.run_linker(&argv, &[]).ok();
    let out = c.t.run_program("prog.lld");
    assert!(
        out.contains(CFG_V1),
        "ld.lld --thinlto-cache-dir now sees the .incbin change (good news: this test can go):\n{out}"
    );
}

#[test]
fn concurrent_links_share_one_cache() {
    require_toolchain!();
    let a = Cached::new();
    let n = a.n();
    a.t.make(Linker::Lld, &["vmlinux.a", "lib/lib.a"]).ok();
    // A second tree, the same cache.
    let b = Cached { t: Tree::copy_of(&a.t), dir: a.dir.clone(), used: a.used.clone(), memo: false };
    // Both trees link vmlinux.o and prog at once (make -j2): four links
    // on a cold cache, the two trees' links of a target racing for the
    // same keys.
    let both = ["vmlinux.o", "prog"];
    let runs: Vec<Ran> = std::thread::scope(|s| {
        let (a, b) = (&a, &b);
        let ha = s.spawn(move || a.t.make_with(Linker::Kdthin, &both, &a.env()));
        let hb = s.spawn(move || b.t.make_with(Linker::Kdthin, &both, &b.env()));
        vec![ha.join().unwrap(), hb.join().unwrap()]
    });
    for ran in runs {
        let ran = ran.ok();
        for target in both {
            let line = ran.lto_line(target);
            assert_eq!(line.cached + line.compiled, n, "{line:?}");
        }
    }
    for c in [&a, &b] {
        assert_eq!(assert_same_as_reference(&c.t), PROG_OUTPUT);
    }
    assert!(a.strays().is_empty(), "left in the cache: {:?}", a.strays());
    // Every key the race stored is whole: relinks are served entirely
    // from it, and store nothing new.
    let entries = a.entries();
    for c in [&a, &b] {
        for target in both {
            assert_counts(&c.link(target), n, 0, &format!("relink of {target} after the race"));
        }
        assert_eq!(assert_same_as_reference(&c.t), PROG_OUTPUT);
    }
    assert_eq!(a.entries(), entries, "all-cached relinks changed the set of entries");
}

#[test]
fn corrupt_entries_are_recompiled() {
    require_toolchain!();
    let c = Cached::new();
    let n = c.n();
    assert_counts(&c.link("vmlinux.o"), 0, n, "cold cache");
    // vmlinux.o's entries: each damaged one is one of its backends.
    let entries = c.entries();
    assert_eq!(entries.len(), n, "one entry per backend: {entries:?}");
    c.link("prog");
    let natives = c.native_bytes();

    type Damage<'a> = (&'a str, &'a dyn Fn(&Path));
    let damage: [Damage; 4] = [
        ("a byte flipped in the object", &|p| {
            let mut d = fs::read(p).unwrap();
            let mid = d.len() / 2;
            d[mid] ^= 0x20;
            fs::write(p, d).unwrap();
        }),
        ("truncated to half", &|p| {
            let d = fs::read(p).unwrap();
            fs::write(p, &d[..d.len() / 2]).unwrap();
        }),
        ("empty", &|p| fs::write(p, b"").unwrap()),
        // A whole, valid entry, but of another key: a store that checked
        // only the content hash would install the wrong object.
        ("another entry's content", &{
            let other = entries[0].clone();
            move |p: &Path| {
                fs::copy(&other, p).unwrap();
            }
        }),
    ];
    for (i, (what, damage)) in damage.iter().enumerate() {
        let victim = &entries[i + 1];
        damage(victim);
        let before = c.natives();
        let line = c.link("vmlinux.o");
        assert_counts(&line, n - 1, 1, &format!("entry {what}: {}", victim.display()));
        let rewritten = c.rewritten_since(&before);
        assert_eq!(rewritten.len(), 1, "entry {what}: compiled {rewritten:?}");
        assert!(c.native_bytes() == natives, "entry {what}: native objects differ from the first build's");
        c.link("prog");
        assert_eq!(assert_same_as_reference(&c.t), PROG_OUTPUT, "entry {what}");
        // Stored again, whole.
        assert_counts(&c.link("vmlinux.o"), n, 0, &format!("relink after the entry was {what}"));
    }
}

/// Lines of `stderr` that are kdthin-ld warnings.
fn warnings(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("kdthin-ld: warning:")).collect()
}

#[test]
fn unusable_cache_dir_warns_once_and_links() {
    require_toolchain!();
    // Under a regular file: the cache cannot even be created.
    let mut c = Cached::new();
    let n = c.n();
    let file = c.t.scratch().join("not-a-dir");
    fs::write(&file, "").unwrap();
    c.dir = file.join("cache");
    let (line, ran) = c.link_with("vmlinux.o", &[]);
    assert_counts(&line, 0, n, "no usable cache");
    let w = warnings(&ran.stderr);
    assert_eq!(w.len(), 1, "expected one warning\n{}", ran.report());
    assert!(w[0].contains(&*c.dir.to_string_lossy()), "the warning should name the cache dir: {}", w[0]);
    c.link("prog");
    assert_eq!(assert_same_as_reference(&c.t), PROG_OUTPUT);

    // A cache that opens but fails on every entry (its shards are files):
    // one warning for the link, not one per backend.
    c.dir = c.t.scratch().join("broken-cache");
    fs::create_dir_all(c.dir.join("v1")).unwrap();
    for shard in 0..16 {
        fs::write(c.dir.join(format!("v1/{shard:x}")), "").unwrap();
    }
    let (line, ran) = c.link_with("vmlinux.o", &[]);
    assert_counts(&line, 0, n, "cache failing on every entry");
    let w = warnings(&ran.stderr);
    assert_eq!(w.len(), 1, "expected one warning\n{}", ran.report());
    c.link("prog");
    assert_eq!(assert_same_as_reference(&c.t), PROG_OUTPUT);
}

//! The clang compile that produced a bitcode object, and the ThinLTO
//! backend command derived from it.
//!
//! The backend must see the object's own codegen flags (`-mcmodel=kernel`,
//! `-fno-pic`, retpoline/CFI options, ...): ld.lld's index does not carry
//! them, and the kernel miscompiles or fails without them. kbuild recorded
//! them in the object's `.cmd` file; we keep every flag except the ones that
//! name the compile's input and outputs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::clang_options::{CACHE_WRAPPERS, DEP_FLAGS, DEP_VALUE, NOT_AN_OBJECT, SEPARATE_VALUE};
use super::cmdfile::{cmd_file_for, read_command_for, CmdFileError};
use super::shell::split_first_command;
use crate::paths::normalize;
use crate::plan::backend::BackendCommand;

/// A `clang ... -c -o <output> <source>` command, split into its parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompileCommand {
    /// The compiler as kbuild ran it (`clang-22`, `/opt/llvm/bin/clang`),
    /// without a compiler-cache wrapper.
    pub compiler: OsString,
    /// Everything else, in order, without `-c`, `-o X`, the source and the
    /// dependency-file options.
    pub flags: Vec<OsString>,
    pub source: PathBuf,
    pub output: PathBuf,
}

impl CompileCommand {
    /// Parse the argv of a clang compile. The command must compile exactly
    /// one source with `-c` and name its output with `-o`.
    pub fn parse(argv: &[String]) -> Result<CompileCommand, String> {
        let mut args = argv;
        if let [wrapper, rest @ ..] = args {
            if CACHE_WRAPPERS.contains(&file_name(wrapper)) {
                args = rest;
            }
        }
        let (compiler, args) = args.split_first().ok_or("empty command")?;
        if compiler.starts_with('-') {
            return Err(format!("`{compiler}` is not a compiler"));
        }

        let mut flags = Vec::new();
        let mut output = None;
        let mut positionals = Vec::new();
        let mut compile = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let a = arg.as_str();
            match a {
                "--" => positionals.extend(it.by_ref().cloned()),
                "-c" => compile = true,
                _ if NOT_AN_OBJECT.contains(&a) => return Err(format!("`{a}` does not compile to an object")),
                _ if a.starts_with('@') => return Err(format!("response file `{a}` (contents unknown to us)")),
                _ if a == "-" || !a.starts_with('-') => positionals.push(arg.clone()),
                _ => {
                    if let Some(out) = output_option(a) {
                        let out = match out {
                            Some(joined) => joined.to_string(),
                            None => value_of(a, &mut it)?,
                        };
                        if output.replace(out).is_some() {
                            return Err("more than one `-o`".into());
                        }
                    } else if let Some(takes_value) = dependency_option(a)? {
                        if takes_value {
                            value_of(a, &mut it)?;
                        }
                    } else {
                        flags.push(arg.clone());
                        if SEPARATE_VALUE.contains(&a) {
                            flags.push(value_of(a, &mut it)?);
                        }
                    }
                }
            }
        }

        if !compile {
            return Err("no `-c`: not a compile".into());
        }
        let output = output.ok_or("no `-o`")?;
        let source = match positionals.as_slice() {
            [one] => one.clone(),
            [] => return Err("no source file".into()),
            several => return Err(format!("several inputs: {}", several.join(" "))),
        };
        Ok(CompileCommand {
            compiler: compiler.into(),
            flags: flags.into_iter().map(OsString::from).collect(),
            source: source.into(),
            output: output.into(),
        })
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn value_of(opt: &str, it: &mut std::slice::Iter<String>) -> Result<String, String> {
    it.next().cloned().ok_or_else(|| format!("`{opt}` without a value"))
}

/// `Some(Some(path))` for `-opath`/`--output=path`, `Some(None)` for `-o`
/// and `--output` (value follows), `None` for anything else.
fn output_option(a: &str) -> Option<Option<&str>> {
    if a == "-o" || a == "--output" {
        return Some(None);
    }
    if let Some(v) = a.strip_prefix("--output=") {
        return Some(Some(v));
    }
    // `-objcmt-*`, `-object`, `-object-file-name=` are other options.
    match a.strip_prefix("-o") {
        Some(v) if !v.starts_with("bj") => Some(Some(v)),
        _ => None,
    }
}

/// For a dependency-file option, whether its value is the next argument.
/// `-Wp,<items>` counts when it passes only dependency options to the
/// preprocessor (kbuild: `-Wp,-MMD,dir/.x.o.d`; tools/build adds
/// `-Wp,-MT,x.o`); mixed with other items it is an error, as dropping the
/// whole argument would lose the others.
fn dependency_option(a: &str) -> Result<Option<bool>, String> {
    if DEP_FLAGS.contains(&a) {
        return Ok(Some(false));
    }
    if DEP_VALUE.contains(&a) {
        return Ok(Some(true));
    }
    // Joined: `-MFfile`.
    if DEP_VALUE.iter().any(|o| o.starts_with("-M") && a.starts_with(o)) {
        return Ok(Some(false));
    }
    let Some(items) = a.strip_prefix("-Wp,") else { return Ok(None) };
    let (mut deps, mut others) = (0, 0);
    let mut it = items.split(',');
    while let Some(item) = it.next() {
        if DEP_FLAGS.contains(&item) || item == "-MG" {
            deps += 1;
            // `-Wp,-MD,file` is the preprocessor's `-MD file`.
            if item == "-MD" || item == "-MMD" {
                it.next();
            }
        } else if DEP_VALUE.contains(&item) {
            deps += 1;
            it.next();
        } else {
            others += 1;
        }
    }
    match (deps, others) {
        (0, _) => Ok(None),
        (_, 0) => Ok(Some(false)),
        _ => Err(format!("`{a}` mixes dependency options with others")),
    }
}

/// The compile kbuild recorded for the bitcode object `obj`.
pub fn lookup(obj: &Path) -> Result<CompileCommand, CmdFileError> {
    let text = read_command_for(obj)?;
    let unparsable = |reason: String| CmdFileError::Unparsable { cmd: cmd_file_for(obj), reason };
    let argv = split_first_command(&text).map_err(|e| unparsable(e.to_string()))?;
    let cc = CompileCommand::parse(&argv).map_err(unparsable)?;
    if !same_object(&cc.output, obj) {
        return Err(unparsable(format!("it compiles {}, not {}", cc.output.display(), obj.display())));
    }
    Ok(cc)
}

/// Whether the recorded `-o` names `obj`. A relative `-o` is relative to
/// make's directory, which need not be ours, so a path that ends with the
/// other one (component-wise) counts as the same.
pub(crate) fn same_object(recorded: &Path, obj: &Path) -> bool {
    let (a, b) = (normalize(recorded), normalize(obj));
    a == b || (a.is_relative() && b.ends_with(&a)) || (b.is_relative() && a.ends_with(&b))
}

impl CompileCommand {
    /// The ThinLTO backend of the module this compile produced: its
    /// compiler and flags, then the link's (see [`BackendCommand`]).
    /// Takes the command by value and moves its flags: a defconfig link
    /// holds thousands of these, ~150 arguments each, and two copies were
    /// a third of kdthin-ld's peak memory.
    pub fn into_backend(self, link_flags: Arc<[OsString]>, modules: BackendFiles) -> BackendCommand {
        let BackendFiles { index, bitcode, imports, output } = modules;
        BackendCommand {
            compiler: self.compiler,
            object_flags: self.flags,
            link_flags,
            index,
            bitcode,
            imports,
            output,
        }
    }
}

/// The files of one backend, from the thin-link.
#[derive(Clone, Debug, Default)]
pub struct BackendFiles {
    pub index: PathBuf,
    pub bitcode: PathBuf,
    pub imports: Vec<PathBuf>,
    pub output: PathBuf,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kbuild::cmdfile::parse_cmd_file;

    fn parse_fixture(text: &str, target: &str) -> CompileCommand {
        let cmd = parse_cmd_file(text, Path::new(target)).unwrap();
        let argv = split_first_command(&cmd).unwrap();
        CompileCommand::parse(&argv).unwrap_or_else(|e| panic!("{target}: {e}"))
    }

    fn argv(s: &str) -> Vec<String> {
        split_first_command(s).unwrap()
    }

    fn has(flags: &[OsString], s: &str) -> bool {
        flags.iter().any(|f| f == s)
    }

    #[test]
    fn real_612_object() {
        let cc = parse_fixture(include_str!("testdata/612-lib-union_find.o.cmd"), "lib/union_find.o");
        assert_eq!(cc.compiler, "clang-22");
        assert_eq!(cc.output, PathBuf::from("lib/union_find.o"));
        assert_eq!(cc.source, PathBuf::from("/work/kernels/linux-source-6.12/lib/union_find.c"));
        assert_eq!(cc.flags[0], "-nostdinc", "-Wp,-MMD,... is dropped");
        assert!(has(&cc.flags, r#"-DKBUILD_MODNAME="union_find""#));
        assert!(has(&cc.flags, "-mcmodel=kernel") && has(&cc.flags, "-flto=thin"));
        let i = cc.flags.iter().position(|f| f == "-include").unwrap();
        assert_eq!(cc.flags[i + 1], "/work/kernels/linux-source-6.12/include/linux/compiler-version.h");
        for gone in ["-c", "-o", "lib/union_find.o", "-Wp,-MMD,lib/.union_find.o.d"] {
            assert!(!has(&cc.flags, gone), "{gone}");
        }
    }

    #[test]
    fn pr_fmt_arrives_as_one_argument() {
        let cc = parse_fixture(include_str!("testdata/61-wireguard-main.o.cmd"), "drivers/net/wireguard/main.o");
        assert_eq!(cc.compiler, "clang");
        assert!(has(&cc.flags, r#"-Dpr_fmt(fmt)=KBUILD_MODNAME ": " fmt"#), "{:?}", cc.flags);
        assert_eq!(cc.source, PathBuf::from("drivers/net/wireguard/main.c"));
    }

    #[test]
    fn tools_build_dependency_options_and_pound() {
        let cc = parse_fixture(include_str!("testdata/612-tools-objtool-weak.o.cmd"), "tools/objtool/weak.o");
        assert!(!cc.flags.iter().any(|f| f.to_str().unwrap().starts_with("-Wp,")), "{:?}", cc.flags);
        assert!(has(&cc.flags, "-DBUILD_STR(s)=#s"));
        let i = cc.flags.iter().position(|f| f == "-I").unwrap();
        assert_eq!(cc.flags[i + 1], "/work/kernels/linux-source-6.12/scripts/include");
        assert_eq!(cc.source, PathBuf::from("weak.c"));
    }

    #[test]
    fn single_object_module_first_command_is_the_compile() {
        let cc = parse_fixture(include_str!("testdata/612-single-obj-module.o.cmd"), "drivers/net/dummy.o");
        assert_eq!(cc.output, PathBuf::from("drivers/net/dummy.o"));
        assert_eq!(cc.source, PathBuf::from("/src/linux/drivers/net/dummy.c"));
        assert!(!cc.flags.iter().any(|f| f.to_str().unwrap().contains("objtool")));
    }

    #[test]
    fn dotdot_object_with_separate_include_dirs() {
        let cc = parse_fixture(include_str!("testdata/612-arm64-kvm_main.o.cmd"), "virt/kvm/kvm_main.o");
        assert_eq!(cc.output, PathBuf::from("arch/arm64/kvm/../../../virt/kvm/kvm_main.o"));
        assert!(same_object(&cc.output, Path::new("virt/kvm/kvm_main.o")));
        assert!(has(&cc.flags, "/src/linux/arch/arm64/kvm/../../../virt/kvm"));
    }

    #[test]
    fn ld_r_with_objtool_is_not_a_compile() {
        let cmd = parse_cmd_file(include_str!("testdata/612-vmlinux.o.cmd"), Path::new("vmlinux.o")).unwrap();
        let err = CompileCommand::parse(&split_first_command(&cmd).unwrap()).unwrap_err();
        assert!(err.contains("-c"), "{err}");
    }

    #[test]
    fn output_and_dependency_spellings() {
        let cc = CompileCommand::parse(&argv(
            "clang -MD -MMD -MP -MF x.d -MFy.d -MT t -MQ q -MJ j.json -Wp,-MD,a.d -Wp,-MMD,b.d,-MP -Wp,-MT,t \
             -O2 -Wp,-DFOO -c -ox.o x.c",
        ))
        .unwrap();
        assert_eq!(cc.flags, ["-O2", "-Wp,-DFOO"]);
        assert_eq!(cc.output, PathBuf::from("x.o"));
        for (cmd, out) in [("clang -c --output=a.o x.c", "a.o"), ("clang -c --output a.o x.c", "a.o")] {
            assert_eq!(CompileCommand::parse(&argv(cmd)).unwrap().output, PathBuf::from(out));
        }
        // `-objcmt-...` is not `-o bjcmt-...`
        let cc = CompileCommand::parse(&argv("clang -objcmt-migrate-literals -c -o a.o x.c")).unwrap();
        assert_eq!(cc.flags, ["-objcmt-migrate-literals"]);
    }

    #[test]
    fn separate_values_are_not_sources() {
        let cc = CompileCommand::parse(&argv(
            "clang -include k.h -I inc -D X=1 -U Y -x c -Xclang -load -Xclang p.so -mllvm -opt \
             -target x86_64 --param max=1 -isystem s -c -o a.o -- a.c",
        ))
        .unwrap();
        assert_eq!(cc.source, PathBuf::from("a.c"));
        assert_eq!(cc.flags.len(), 22);
        assert_eq!(cc.flags[15], "-opt", "-mllvm's value is not an -o");
    }

    #[test]
    fn rejects_what_is_not_one_compile() {
        for (cmd, why) in [
            ("clang -o a.o a.c", "no `-c`"),
            ("clang -c a.c", "no `-o`"),
            ("clang -c -o a.o", "no source"),
            ("clang -c -o a.o a.c b.c", "several inputs: a.c b.c"),
            ("clang -c -o a.o -o b.o a.c", "more than one"),
            ("clang -c -S -o a.s a.c", "`-S`"),
            ("clang -c -emit-llvm -o a.bc a.c", "`-emit-llvm`"),
            ("clang -c -o a.o @args", "response file"),
            ("clang -c a.c -o", "`-o` without a value"),
            ("clang -c -o a.o a.c -include", "`-include` without a value"),
            ("clang -c -Wp,-MD,a.d,-DX -o a.o a.c", "mixes"),
            ("ccache", "empty command"),
            ("ccache -s", "not a compiler"),
        ] {
            let err = CompileCommand::parse(&argv(cmd)).unwrap_err();
            assert!(err.contains(why), "{cmd}: {err}");
        }
    }

    #[test]
    fn cache_wrappers_are_dropped() {
        for cmd in ["ccache clang-22 -c -o a.o a.c", "/usr/bin/sccache clang-22 -c -o a.o a.c"] {
            let cc = CompileCommand::parse(&argv(cmd)).unwrap();
            assert_eq!(cc.compiler, "clang-22", "{cmd}");
            assert!(cc.flags.is_empty());
        }
        let cc = CompileCommand::parse(&argv("/opt/llvm/bin/clang -c -o a.o a.c")).unwrap();
        assert_eq!(cc.compiler, "/opt/llvm/bin/clang");
    }

    #[test]
    fn backend_command_line() {
        let cc = CompileCommand::parse(&argv("clang-22 -Wp,-MMD,d -O2 -flto=thin -DX='a b' -c -o a.o a.c")).unwrap();
        let files = BackendFiles {
            index: "a.o.thinlto.bc".into(),
            bitcode: "a.o".into(),
            imports: vec![],
            output: "a.thinlto-native.o".into(),
        };
        let got = cc.into_backend(["-fno-pic".into(), "-mcmodel=kernel".into()].into(), files).argv();
        let want = [
            "clang-22",
            "-O2",
            "-flto=thin",
            "-DX=a b",
            "-fno-pic",
            "-mcmodel=kernel",
            "-Wno-unused-command-line-argument",
            "-x",
            "ir",
            "-fno-lto",
            "-fthinlto-index=a.o.thinlto.bc",
            "-c",
            "-o",
            "a.thinlto-native.o",
            "a.o",
        ];
        assert_eq!(got, want);
    }

    pub(crate) fn find_clang() -> Option<String> {
        find_tool(&["clang-22", "clang"])
    }

    /// The derived backend command, run with real clang and ld.lld on a
    /// two-module program laid out like a kbuild tree.
    #[test]
    fn backend_runs_with_real_clang() {
        let (Some(clang), Some(lld)) = (find_clang(), find_tool(&["ld.lld-22", "ld.lld"])) else {
            eprintln!("skipped: needs clang-22/clang and ld.lld-22/ld.lld on PATH");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("lib")).unwrap();
        std::fs::write(d.join("lib/a.c"), "int b(void);\nint a(void) { return b() + 1; }\n").unwrap();
        std::fs::write(d.join("lib/b.c"), "int b(void) { return 41; }\n").unwrap();
        std::fs::write(d.join("lib/k.h"), "#define K 1\n").unwrap();
        let run = |argv: &[OsString]| {
            let out = std::process::Command::new(&argv[0]).args(&argv[1..]).current_dir(d).output().unwrap();
            assert!(out.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        for m in ["a", "b"] {
            // What kbuild would run and record (6.12 format).
            let compile = format!(
                "{clang} -Wp,-MMD,lib/.{m}.o.d -O2 -include lib/k.h -I lib -DNAME='\"{m} x\"' \
                 -Werror=unused-command-line-argument \
                 -fno-PIE -flto=thin -c -o lib/{m}.o lib/{m}.c"
            );
            run(&argv(&compile).into_iter().map(OsString::from).collect::<Vec<_>>());
            let saved =
                format!("savedcmd_lib/{m}.o := {}\n\nsource_lib/{m}.o := lib/{m}.c\n", compile.replace('$', "$$"));
            std::fs::write(d.join(format!("lib/.{m}.o.cmd")), saved).unwrap();
        }
        let index_only: Vec<OsString> =
            [lld.as_str(), "--thinlto-index-only", "-r", "-o", "out.o", "lib/a.o", "lib/b.o"]
                .map(OsString::from)
                .into();
        run(&index_only);

        let cc = lookup(&d.join("lib/a.o")).unwrap();
        let files = BackendFiles {
            index: "lib/a.o.thinlto.bc".into(),
            bitcode: "lib/a.o".into(),
            imports: vec![],
            output: "lib/a.native.o".into(),
        };
        run(&cc.into_backend(Arc::from([]), files).argv());
        let native = std::fs::read(d.join("lib/a.native.o")).unwrap();
        assert_eq!(&native[..4], b"\x7fELF", "backend output is a native object");
    }

    pub(crate) fn find_tool(names: &[&str]) -> Option<String> {
        names
            .iter()
            .map(|s| s.to_string())
            .find(|c| std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
    }
}

use super::*;
use std::fs;

fn argv(s: &[&str]) -> Vec<OsString> {
    s.iter().map(OsString::from).collect()
}

fn words(s: &str) -> Vec<OsString> {
    s.split_whitespace().map(OsString::from).collect()
}

/// (tokens, id or "input"/"unknown", value) per arg, for compact asserts.
fn summary(cl: &CommandLine) -> Vec<(String, String, Option<String>)> {
    cl.args
        .iter()
        .map(|a| {
            let toks = a.tokens.iter().map(|t| t.to_string_lossy()).collect::<Vec<_>>().join(" ");
            let (kind, value) = match &a.kind {
                ArgKind::Input(p) => ("input".to_string(), Some(p.to_string_lossy().into_owned())),
                ArgKind::Unknown => ("unknown".to_string(), None),
                ArgKind::Opt { id, value } => {
                    (format!("{id:?}"), value.as_ref().map(|v| v.to_string_lossy().into_owned()))
                }
            };
            (toks, kind, value)
        })
        .collect()
}

fn row(toks: &str, kind: &str, value: Option<&str>) -> (String, String, Option<String>) {
    (toks.to_string(), kind.to_string(), value.map(str::to_string))
}

fn paths(inputs: &[InputRef]) -> Vec<String> {
    inputs.iter().map(|i| i.path.to_string_lossy().into_owned()).collect()
}

fn write(dir: &Path, rel: &str, contents: &str) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

#[test]
fn kbuild_vmlinux_o_link() {
    let line = "-m elf_x86_64 -mllvm -import-instr-limit=5 -z noexecstack -r -o vmlinux.o \
                -T .tmp_initcalls.lds --whole-archive vmlinux.a --no-whole-archive \
                --start-group lib/lib.a arch/x86/lib/lib.a --end-group";
    let av = words(line);
    let cl = CommandLine::parse(&av).unwrap();
    assert_eq!(cl.render(), av);
    assert_eq!(
        summary(&cl),
        vec![
            row("-m elf_x86_64", "Emulation", Some("elf_x86_64")),
            row("-mllvm -import-instr-limit=5", "Mllvm", Some("-import-instr-limit=5")),
            row("-z noexecstack", "Other", Some("noexecstack")),
            row("-r", "Relocatable", None),
            row("-o vmlinux.o", "Output", Some("vmlinux.o")),
            row("-T .tmp_initcalls.lds", "Script", Some(".tmp_initcalls.lds")),
            row("--whole-archive", "WholeArchive", None),
            row("vmlinux.a", "input", Some("vmlinux.a")),
            row("--no-whole-archive", "NoWholeArchive", None),
            row("--start-group", "StartGroup", None),
            row("lib/lib.a", "input", Some("lib/lib.a")),
            row("arch/x86/lib/lib.a", "input", Some("arch/x86/lib/lib.a")),
            row("--end-group", "EndGroup", None),
        ]
    );
    assert_eq!(cl.value_of(OptId::Output), Some(OsStr::new("vmlinux.o")));
    assert!(cl.rsp_files.is_empty());

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), ".tmp_initcalls.lds", "");
    let inputs = cl.inputs_in(dir.path()).unwrap();
    assert_eq!(paths(&inputs), [".tmp_initcalls.lds", "vmlinux.a", "lib/lib.a", "arch/x86/lib/lib.a"]);
    assert_eq!(inputs.iter().map(|i| i.arg_index).collect::<Vec<_>>(), [5, 7, 10, 11]);
    assert!(inputs[0].is_script && !inputs[1].is_script);
    // -r makes the whole link static.
    let st = PosState { is_static: true, ..PosState::default() };
    assert_eq!(inputs[0].state, st);
    assert_eq!(inputs[1].state, PosState { whole_archive: true, ..st });
    assert_eq!(inputs[2].state, PosState { group: Some(0), ..st });
    assert_eq!(inputs[3].state, PosState { group: Some(0), ..st });
}

#[test]
fn kbuild_module_link_with_mod_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "drivers/foo/foo.mod", "drivers/foo/a.o drivers/foo/b.o\n");
    let av = words("-m elf_x86_64 -z noexecstack --no-warn-rwx-segments -r -o drivers/foo/foo.o @drivers/foo/foo.mod");
    let cl = CommandLine::parse_in(&av, dir.path()).unwrap();
    assert_eq!(cl.render(), av);
    let flat = words(
        "-m elf_x86_64 -z noexecstack --no-warn-rwx-segments -r -o drivers/foo/foo.o drivers/foo/a.o drivers/foo/b.o",
    );
    assert_eq!(cl.render_flat(&mut |_, _| None), flat);
    // lld 22 does not know this GNU ld option: kept, untouched.
    assert_eq!(cl.args[2].kind, ArgKind::Unknown);
    assert_eq!(cl.args[2].tokens, argv(&["--no-warn-rwx-segments"]));
    assert_eq!(
        cl.rsp_files,
        vec![RspFile {
            token: "@drivers/foo/foo.mod".into(),
            path: dir.path().join("drivers/foo/foo.mod"),
            parent: None,
            span: 8..10,
        }]
    );
    let inputs = cl.inputs().unwrap();
    assert_eq!(paths(&inputs), ["drivers/foo/a.o", "drivers/foo/b.o"]);
    assert_eq!(inputs.iter().map(|i| cl.args[i.arg_index].from_rsp).collect::<Vec<_>>(), [Some(0), Some(0)]);
    assert_eq!(cl.args[4].from_rsp, None);
}

#[test]
fn spellings() {
    #[rustfmt::skip]
    let cases: &[(&[&str], &str, Option<&str>)] = &[
        (&["-ofoo"], "Output", Some("foo")),
        (&["-o", "foo"], "Output", Some("foo")),
        (&["--output=foo"], "Output", Some("foo")),
        (&["--output", "foo"], "Output", Some("foo")),
        // `--output` takes two dashes only; `-output` is `-o utput` to lld.
        (&["-output"], "Output", Some("utput")),
        (&["-omagic"], "Output", Some("magic")),
        (&["--omagic"], "Omagic", None),
        (&["-N"], "Omagic", None),
        (&["--script=x"], "Script", Some("x")),
        (&["-script=x"], "Script", Some("x")),
        (&["-script", "x"], "Script", Some("x")),
        (&["--script", "x"], "Script", Some("x")),
        (&["-Tx"], "Script", Some("x")),
        (&["-T", "x"], "Script", Some("x")),
        (&["-dT", "d.lds"], "DefaultScript", Some("d.lds")),
        (&["--library=c"], "Library", Some("c")),
        (&["--library", "c"], "Library", Some("c")),
        (&["-lc"], "Library", Some("c")),
        (&["-l", "c"], "Library", Some("c")),
        (&["-l:libc.a"], "Library", Some(":libc.a")),
        (&["-L/d"], "LibraryPath", Some("/d")),
        (&["-L", "/d"], "LibraryPath", Some("/d")),
        (&["--library-path=/d"], "LibraryPath", Some("/d")),
        (&["-library-path", "/d"], "LibraryPath", Some("/d")),
        (&["--sysroot=/s"], "Sysroot", Some("/s")),
        (&["--sysroot", "/s"], "Sysroot", Some("/s")),
        (&["-sysroot=/s"], "Sysroot", Some("/s")),
        (&["--lto-O3"], "LtoOptLevel", Some("3")),
        // `--lto-O` takes two dashes only; `-lto-O3` is `-l to-O3` to lld.
        (&["-lto-O3"], "Library", Some("to-O3")),
        (&["--lto-CGO2"], "LtoOther", Some("2")),
        (&["--lto-partitions=2"], "LtoOther", Some("2")),
        (&["--thinlto-cache-dir=c"], "Other", Some("c")),
        (&["--thinlto-jobs=4"], "Other", Some("4")),
        (&["--no-lto-whole-program-visibility"], "LtoOther", None),
        (&["--fat-lto-objects"], "LtoOther", None),
        (&["--plugin-opt=O2"], "PluginOpt", Some("O2")),
        (&["-plugin-opt", "O2"], "PluginOpt", Some("O2")),
        (&["--plugin-opt", "thinlto-index-only=list"], "PluginOpt", Some("thinlto-index-only=list")),
        (&["-plugin-opt=thinlto-index-only"], "PluginOpt", Some("thinlto-index-only")),
        (&["--plugin-opt=-import-instr-limit=5"], "PluginOpt", Some("-import-instr-limit=5")),
        (&["-plugin-opt=mcpu=znver3"], "PluginOpt", Some("mcpu=znver3")),
        (&["--plugin-opt=some-gcc-thing"], "PluginOpt", Some("some-gcc-thing")),
        (&["--plugin-opt=jobs=4"], "PluginOpt", Some("jobs=4")),
        (&["-plugin", "/usr/lib/LLVMgold.so"], "Other", Some("/usr/lib/LLVMgold.so")),
        (&["--thinlto-index-only"], "ThinltoIndexOnly", None),
        (&["--thinlto-index-only=list.txt"], "ThinltoIndexOnly", Some("list.txt")),
        (&["-thinlto-index-only"], "unknown", None),
        (&["--thinlto-distributor=/bin/d"], "ThinltoDistributor", Some("/bin/d")),
        (&["-mllvm", "-x=1"], "Mllvm", Some("-x=1")),
        (&["-mllvm=-x=1"], "Mllvm", Some("-x=1")),
        (&["--mllvm", "-x"], "Mllvm", Some("-x")),
        (&["-z", "now"], "Other", Some("now")),
        (&["-znow"], "Other", Some("now")),
        (&["-m", "elf_i386"], "Emulation", Some("elf_i386")),
        (&["-melf_i386"], "Emulation", Some("elf_i386")),
        (&["-("], "StartGroup", None),
        (&["-)"], "EndGroup", None),
        (&["-start-lib"], "StartLib", None),
        (&["--end-lib"], "EndLib", None),
        (&["-push-state"], "PushState", None),
        (&["--pop-state"], "PopState", None),
        (&["-static"], "Bstatic", None),
        (&["--Bstatic"], "Bstatic", None),
        (&["-dn"], "Bstatic", None),
        (&["-non_shared"], "Bstatic", None),
        (&["-dy"], "Bdynamic", None),
        (&["-call_shared"], "Bdynamic", None),
        (&["-as-needed"], "AsNeeded", None),
        (&["--no-as-needed"], "NoAsNeeded", None),
        (&["-b", "binary"], "Format", Some("binary")),
        (&["-v"], "Version", None),
        (&["-V"], "Version", None),
        (&["--version"], "Version", None),
        (&["-version"], "Version", None),
        (&["--help"], "Help", None),
        (&["--build-id"], "Other", None),
        (&["--build-id=sha1"], "Other", Some("sha1")),
        (&["-soname", "libx.so"], "Other", Some("libx.so")),
        (&["-hlibx.so"], "Other", Some("libx.so")),
        (&["--defsym", "a=b"], "Other", Some("a=b")),
        (&["--defsym=a=b"], "Other", Some("a=b")),
        (&["-Map", "m.txt"], "Other", Some("m.txt")),
        (&["-Map=m.txt"], "Other", Some("m.txt")),
        (&["--dependency-file=d"], "Other", Some("d")),
        (&["-e", "_start"], "Other", Some("_start")),
        (&["--entry=_start"], "Other", Some("_start")),
        (&["-E"], "Other", None),
        (&["--export-dynamic"], "Other", None),
        (&["-shared"], "Other", None),
        (&["-pie"], "Other", None),
        (&["--gc-sections"], "Other", None),
        (&["-X"], "Other", None),
        (&["--no-undefined"], "Other", None),
        (&["--icf=all"], "Other", None),
        (&["--icf=bogus"], "unknown", None),
        (&["--no-warn-rwx-segments"], "unknown", None),
        (&["-Bstaticx"], "unknown", None),
        (&["--"], "unknown", None),
        (&["-"], "input", Some("-")),
        (&["foo.o"], "input", Some("foo.o")),
        (&["=weird"], "input", Some("=weird")),
    ];
    let mut all = Vec::new();
    for &(toks, kind, value) in cases {
        let cl = CommandLine::parse(&argv(toks)).unwrap();
        assert_eq!(summary(&cl), vec![row(&toks.join(" "), kind, value)], "{toks:?}");
        all.extend(argv(toks));
    }
    // The same, all on one line: nothing bleeds into its neighbour.
    let cl = CommandLine::parse(&all).unwrap();
    assert_eq!(cl.args.len(), cases.len());
    assert_eq!(cl.render(), all);
    assert_eq!(cl.render_flat(&mut |_, _| None), all);
}

#[test]
fn opt_info_and_values() {
    let cl = CommandLine::parse(&argv(&["--lto-O2", "-plugin-opt", "O3", "-mllvm", "-a", "x.o", "-mllvm=-b"])).unwrap();
    let names: Vec<_> = cl.args.iter().map(|a| a.opt_info().map(|i| i.name)).collect();
    assert_eq!(names, [Some("lto-O"), Some("plugin-opt=O"), Some("mllvm"), None, Some("mllvm=")]);
    assert_eq!(cl.values_of(OptId::Mllvm).collect::<Vec<_>>(), ["-a", "-b"]);
    assert_eq!(cl.value_of(OptId::LtoOptLevel), Some(OsStr::new("2")));
    assert_eq!(cl.value_of(OptId::PluginOpt), Some(OsStr::new("O3")));
    assert!(cl.has(OptId::Mllvm) && !cl.has(OptId::Output));
}

#[test]
fn missing_values() {
    for av in [&["-o"][..], &["foo.o", "--script"], &["-mllvm"], &["-L"]] {
        let err = CommandLine::parse(&argv(av)).unwrap_err().to_string();
        assert_eq!(err, format!("{}: missing argument", av.last().unwrap()));
    }
    // Nothing to glue it to: lld reports an unknown argument.
    let cl = CommandLine::parse(&argv(&["-plugin-opt"])).unwrap();
    assert_eq!(summary(&cl), vec![row("-plugin-opt", "unknown", None)]);
}

#[test]
fn nested_response_files_with_quotes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "outer.rsp", "-o \"out file.o\" @inner.rsp 'x y.o'\n@missing.rsp");
    // Nested names are relative to the current directory, not the includer.
    write(dir.path(), "inner.rsp", "--start-group \"a\\\"b.a\" --end-group\n");
    write(dir.path(), "sub/inner.rsp", "wrong.o");
    let av = argv(&["-m", "elf_x86_64", "@outer.rsp", "last.o"]);
    let cl = CommandLine::parse_in(&av, dir.path()).unwrap();
    assert_eq!(cl.render(), av);
    let flat = argv(&[
        "-m",
        "elf_x86_64",
        "-o",
        "out file.o",
        "--start-group",
        "a\"b.a",
        "--end-group",
        "x y.o",
        "@missing.rsp",
        "last.o",
    ]);
    assert_eq!(cl.render_flat(&mut |_, _| None), flat);
    assert_eq!(
        cl.rsp_files,
        vec![
            RspFile { token: "@outer.rsp".into(), path: dir.path().join("outer.rsp"), parent: None, span: 2..9 },
            RspFile { token: "@inner.rsp".into(), path: dir.path().join("inner.rsp"), parent: Some(0), span: 4..7 },
        ]
    );
    let from: Vec<_> = cl.args.iter().map(|a| a.from_rsp).collect();
    assert_eq!(from, [None, Some(0), Some(1), Some(1), Some(1), Some(0), Some(0), None]);
    // A missing file stays a literal argument, which lld takes as an input.
    assert_eq!(cl.args[6].kind, ArgKind::Input("@missing.rsp".into()));

    let edited = cl.render_flat(&mut |_, a| (a.tokens[0] == "x y.o").then(|| argv(&["z.o"])));
    assert_eq!(edited[7], "z.o");
    assert_eq!(edited.len(), flat.len());
}

#[test]
fn args_spanning_response_file_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.rsp", "foo.o -o");
    write(dir.path(), "p.rsp", "x.o --plugin-opt");
    write(dir.path(), "empty.rsp", " \n");
    let av = argv(&["@empty.rsp", "@a.rsp", "out", "@empty.rsp", "@p.rsp", "O3", "@empty.rsp"]);
    let cl = CommandLine::parse_in(&av, dir.path()).unwrap();
    assert_eq!(cl.render(), av);
    assert_eq!(
        summary(&cl),
        vec![
            row("foo.o", "input", Some("foo.o")),
            row("-o out", "Output", Some("out")),
            row("x.o", "input", Some("x.o")),
            row("--plugin-opt O3", "PluginOpt", Some("O3")),
        ]
    );
    assert_eq!(cl.args[1].from_rsp, Some(1));
    assert_eq!(cl.rsp_files.len(), 5);
    assert_eq!(cl.rsp_files.iter().map(|f| f.span.clone()).collect::<Vec<_>>(), [0..0, 0..2, 3..3, 3..5, 6..6]);
}

#[test]
fn response_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "self.rsp", "a.o @self.rsp");
    write(d, "r2.rsp", "x @r3.rsp");
    write(d, "r3.rsp", "y @r2.rsp");
    write(d, "twice.rsp", "@leaf.rsp @leaf.rsp");
    write(d, "leaf.rsp", "leaf.o");
    fs::create_dir(d.join("adir")).unwrap();
    let err = |av: &[&str]| CommandLine::parse_in(&argv(av), d).unwrap_err().to_string();
    assert!(err(&["@self.rsp"]).starts_with("recursive expansion of: '"), "{}", err(&["@self.rsp"]));
    assert!(err(&["@r2.rsp"]).contains("recursive expansion"));
    assert!(err(&["@adir"]).contains("is a directory"));
    // A bare `@` names the current directory, as in LLVM.
    assert!(err(&["@"]).contains("is a directory"));
    assert!(err(&["--rsp-quoting=windows", "@leaf.rsp"]).contains("--rsp-quoting=windows"));

    // Including a file twice is not recursion.
    let cl = CommandLine::parse_in(&argv(&["@twice.rsp"]), d).unwrap();
    assert_eq!(cl.render_flat(&mut |_, _| None), argv(&["leaf.o", "leaf.o"]));
    assert_eq!(cl.render(), argv(&["@twice.rsp"]));
    // Quoting only matters when a file is read; "posix" is GNU.
    assert!(CommandLine::parse_in(&argv(&["--rsp-quoting=windows", "x.o"]), d).is_ok());
    assert!(CommandLine::parse_in(&argv(&["--rsp-quoting", "posix", "@leaf.rsp"]), d).is_ok());
    let cl = CommandLine::parse_in(&argv(&["@nope"]), d).unwrap();
    assert_eq!(cl.args[0].kind, ArgKind::Input("@nope".into()));
    assert!(cl.rsp_files.is_empty());
}

#[test]
fn position_dependent_state() {
    let av = words(
        "a.o --as-needed --push-state --whole-archive -Bstatic --no-as-needed b.a --pop-state c.o \
         --start-group d.a e.a --end-group --start-lib f.o --end-lib -( g.a -) \
         -b binary blob --push-state --format=default h.o -lfoo --pop-state i.o",
    );
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "libfoo.so", "");
    let mut av = av;
    av.push("-L".into());
    av.push(dir.path().into());
    let cl = CommandLine::parse(&av).unwrap();
    let inputs = cl.inputs().unwrap();
    let name = |i: &InputRef| i.path.file_name().unwrap().to_string_lossy().into_owned();
    let got: Vec<_> = inputs.iter().map(|i| (name(i), i.state)).collect();
    let d = PosState::default();
    let an = PosState { as_needed: true, ..d };
    let expect = vec![
        ("a.o", d),
        ("b.a", PosState { whole_archive: true, is_static: true, ..d }),
        ("c.o", an),
        ("d.a", PosState { group: Some(0), ..an }),
        ("e.a", PosState { group: Some(0), ..an }),
        ("f.o", PosState { in_lib: true, ..an }),
        ("g.a", PosState { group: Some(1), ..an }),
        ("blob", PosState { binary: true, ..an }),
        ("h.o", an),
        ("libfoo.so", an),
        // --format is not saved by --push-state.
        ("i.o", an),
    ];
    let expect: Vec<_> = expect.into_iter().map(|(n, s)| (n.to_string(), s)).collect();
    assert_eq!(got, expect);
}

#[test]
fn static_and_relocatable() {
    let state = |line: &str| CommandLine::parse(&words(line)).unwrap().inputs().unwrap()[0].state.is_static;
    assert!(state("-Bstatic x.o"));
    assert!(!state("-Bstatic -Bdynamic x.o"));
    assert!(state("-r -Bdynamic x.o"));
    assert!(state("-Bdynamic x.o --relocatable"));
    assert!(state("-N x.o"));
    assert!(state("--nmagic x.o"));
    assert!(state("-static --push-state -dy --pop-state x.o"));
}

#[test]
fn lld_errors_while_walking_inputs() {
    let err = |line: &str| CommandLine::parse(&words(line)).unwrap().inputs().unwrap_err().to_string();
    assert_eq!(err("--end-group"), "stray --end-group");
    assert_eq!(err("--start-group a.a --start-group"), "nested --start-group");
    assert_eq!(err("--start-group --start-lib"), "may not nest --start-lib in --start-group");
    // --start-lib counts as a group for lld too.
    assert_eq!(err("--start-lib --start-group"), "nested --start-group");
    assert_eq!(err("--start-lib --start-lib"), "nested --start-lib");
    assert_eq!(err("--end-lib"), "stray --end-lib");
    assert_eq!(err("--push-state --pop-state --pop-state"), "unbalanced --push-state/--pop-state");
    assert_eq!(err("--format=coff"), "unknown --format value: coff (supported formats: elf, default, binary)");
    assert_eq!(err("-lnope"), "unable to find library -lnope");
}

/// The same layout as the ld.lld 22 runs this mirrors: d1/libfoo.so,
/// d2/libfoo.a, sr/usr/lib/libbar.a.
#[test]
fn library_search_like_lld() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for f in ["d1/libfoo.so", "d2/libfoo.a", "sr/usr/lib/libbar.a", "d2/s.lds", "d2/odd.name"] {
        write(d, f, "");
    }
    let found = |line: &str| {
        let inputs = CommandLine::parse(&words(line)).unwrap().inputs_in(d).unwrap();
        inputs.iter().map(|i| (i.path.to_string_lossy().into_owned(), i.is_script)).collect::<Vec<_>>()
    };
    let lib = |p: &str| vec![(p.to_string(), false)];
    // Each dir in turn, .so before .a.
    assert_eq!(found("-Ld2 -Ld1 -lfoo"), lib("d2/libfoo.a"));
    assert_eq!(found("-Ld1 -Ld2 -lfoo"), lib("d1/libfoo.so"));
    assert_eq!(found("-Ld1 -Ld2 -Bstatic -lfoo"), lib("d2/libfoo.a"));
    assert_eq!(found("-r -Bdynamic -Ld1 -Ld2 -lfoo"), lib("d2/libfoo.a"));
    // -L applies wherever it is.
    assert_eq!(found("-lfoo -L d1"), lib("d1/libfoo.so"));
    assert_eq!(found("--library foo --library-path=d2/"), lib("d2/libfoo.a"));
    assert_eq!(found("--sysroot=sr -L=/usr/lib -lbar"), lib("sr/usr/lib/libbar.a"));
    assert_eq!(found("--sysroot sr/ -L =usr/lib -lbar"), lib("sr/usr/lib/libbar.a"));
    assert_eq!(found("-Ld1 -Ld2 -l:libfoo.a"), lib("d2/libfoo.a"));
    assert_eq!(found("-Ld2 -l :odd.name"), lib("d2/odd.name"));
    // Scripts: the current directory first, then the search path.
    assert_eq!(found("-Ld2 -T s.lds"), vec![("d2/s.lds".to_string(), true)]);
    assert_eq!(found("-Ld1 --script=d2/s.lds"), vec![("d2/s.lds".to_string(), true)]);
    assert_eq!(found("-Ld2 --default-script s.lds"), vec![("d2/s.lds".to_string(), true)]);
    // Not there yet: as spelled (lld will say "cannot find linker script").
    assert_eq!(found("-Ld2 -T gen/x.lds"), vec![("gen/x.lds".to_string(), true)]);
    // --chroot prefixes absolute paths only.
    let abs = d.join("d2/libfoo.a").display().to_string();
    assert_eq!(found(&format!("--chroot /r {abs} x.o")), [(format!("/r{abs}"), false), ("x.o".into(), false)]);
}

#[test]
fn llvm_path_append() {
    let join = |parts: &[&str]| {
        let mut p = Vec::new();
        parts.iter().for_each(|c| llvm_append(&mut p, c.as_bytes()));
        String::from_utf8(p).unwrap()
    };
    assert_eq!(join(&["", "/usr/lib", "libc.a"]), "/usr/lib/libc.a");
    assert_eq!(join(&["sr", "/usr/lib", "libc.a"]), "sr/usr/lib/libc.a");
    assert_eq!(join(&["sr/", "//usr", "x"]), "sr/usr/x");
    assert_eq!(join(&["", "libc.a"]), "libc.a");
    assert_eq!(join(&["d", "", "x"]), "d/x");
}

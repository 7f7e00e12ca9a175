//! The recipe that runs a link, as a second source of compile flags.
//!
//! With `CONFIG_LTO_CLANG`, kbuild (6.1, 6.12: scripts/Makefile.build) links
//! a single-object module inside its compile recipe:
//!
//! ```text
//! cmd_ld_single_m = $(if $(is-single-obj-m), ; $(LD) $(ld_flags) -r -o $(tmp-target) $@; mv $(tmp-target) $@)
//! cmd_cc_o_c = $(CC) $(c_flags) -c -o $@ $< $(cmd_ld_single_m) $(cmd_objtool)
//! ```
//!
//! and fixdep writes the object's `.cmd` file only after the whole recipe.
//! So when `$(LD)` runs, that file is missing (first build) or records the
//! previous compile (older than the object). make runs the recipe as
//! `/bin/sh -c '<script>'`, and that shell is our parent: its command line
//! holds the compile that has just produced the object.
//!
//! [`compile_in_script`] finds that compile in the script text (pure, so
//! testable with real recipes); [`ParentRecipe`] reads the script from
//! `/proc/<ppid>/cmdline`. Anything that leaves doubt about which command
//! wrote the object is refused, with the reason: the caller then links
//! in-process, as it would without this.

use std::cell::OnceCell;
use std::ffi::OsString;
use std::path::Path;

use super::compile::{same_object, CompileCommand};
use super::shell::{split_script, ScriptCommand, Sep};

/// Commands that change how the commands after them run (directory,
/// definitions): relative paths or words after them mean something else.
const CHANGES_WHAT_FOLLOWS: &[&str] = &["cd", "pushd", "popd", "eval", ".", "source", "alias"];

/// The compile in `script` that wrote `obj`, for the link run with
/// `link_args` (kdthin-ld's arguments, without the program name).
///
/// Accepted only when, in the script:
/// - exactly one command has the words `<any program> link_args...`: this
///   link;
/// - every command before it could be split into words (no expansion,
///   compound command, subshell, ...), none changes directory or how later
///   commands are read (`cd`, `eval`, ...), and all are joined by `;`, `&&`
///   or newlines (no `|`, `||` or `&`: each of them ran, to completion,
///   before the link);
/// - exactly one command of the script (of those that could be split) is a
///   compile that [`CompileCommand::parse`] accepts whose `-o` is `obj`, and
///   it comes before the link;
/// - no command between that compile and the link names `obj`.
///
/// The error says which rule the script breaks.
pub fn compile_in_script(script: &str, link_args: &[String], obj: &Path) -> Result<CompileCommand, String> {
    let cmds = split_script(script);
    let is_link = |c: &ScriptCommand| matches!(&c.words, Ok(w) if w.len() > 1 && w[1..] == *link_args);
    let links: Vec<usize> = (0..cmds.len()).filter(|&i| is_link(&cmds[i])).collect();
    let link = match links[..] {
        [one] => one,
        [] => return Err("does not run this link as a command of its own".into()),
        ref several => return Err(format!("runs this link {} times", several.len())),
    };
    for c in &cmds[..link] {
        let words = match &c.words {
            Ok(w) => w,
            Err(e) => {
                return Err(format!("runs `{}` before this link, which cannot be followed: {e}", excerpt(script, c.at)))
            }
        };
        let joined = match c.then {
            Sep::Seq | Sep::And => None,
            Sep::Or => Some("||"),
            Sep::Pipe => Some("|"),
            Sep::Background => Some("&"),
        };
        if let Some(op) = joined {
            return Err(format!(
                "runs `{}` with `{op}` before this link: not a plain sequence of commands",
                excerpt(script, c.at)
            ));
        }
        if CHANGES_WHAT_FOLLOWS.contains(&words[0].as_str()) {
            return Err(format!("runs `{}` before this link", words[0]));
        }
    }
    let compiles: Vec<(usize, CompileCommand)> = cmds
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, CompileCommand::parse(c.words.as_ref().ok()?).ok()?)))
        .filter(|(_, cc)| same_object(&cc.output, obj))
        .collect();
    let (at, cc) = match compiles.len() {
        1 => compiles.into_iter().next().expect("one"),
        0 => return Err(format!("does not compile {}", obj.display())),
        n => return Err(format!("compiles {} {n} times", obj.display())),
    };
    if at > link {
        return Err(format!("compiles {} only after this link", obj.display()));
    }
    for c in &cmds[at + 1..link] {
        let words = c.words.as_ref().expect("checked above");
        if words.iter().any(|w| same_object(Path::new(w), obj)) {
            return Err(format!(
                "runs `{}` between the compile of {} and this link, which names it",
                excerpt(script, c.at),
                obj.display()
            ));
        }
    }
    Ok(cc)
}

/// Up to 40 characters of `script` from `at`, for messages.
fn excerpt(script: &str, at: usize) -> String {
    let rest = &script[at..];
    let end = rest.find(['\n', ';']).unwrap_or(rest.len());
    let mut s: String = rest[..end].trim_end().chars().take(40).collect();
    if s.len() < rest[..end].trim_end().len() {
        s.push_str("...");
    }
    s
}

/// The script of a shell's command line (`/proc/<pid>/cmdline`: arguments
/// separated by NUL bytes): `sh -c SCRIPT` as make runs recipes, with
/// options before `-c` allowed (`.SHELLFLAGS = -ec`, `bash -o pipefail -c`).
/// The error completes "the parent process is ...".
pub fn script_of_cmdline(cmdline: &[u8]) -> Result<String, String> {
    let args: Vec<&[u8]> = cmdline.strip_suffix(b"\0").unwrap_or(cmdline).split(|&b| b == 0).collect();
    let shown = || {
        let s = String::from_utf8_lossy(&args.join(&b' ')).into_owned();
        if s.chars().count() > 60 {
            format!("{}...", s.chars().take(60).collect::<String>())
        } else {
            s
        }
    };
    let not_a_shell = || Err(format!("not a shell running a script: `{}`", shown()));
    let Some((argv0, rest)) = args.split_first() else { return not_a_shell() };
    let name = argv0.rsplit(|&b| b == b'/').next().unwrap_or(argv0);
    if !name.ends_with(b"sh") {
        return not_a_shell();
    }
    let mut it = rest.iter();
    let mut has_c = false;
    while let Some(a) = it.next() {
        match *a {
            b"--" => break,
            b"-o" | b"+o" => {
                it.next();
            }
            _ if a.starts_with(b"--") => {}
            [b'-' | b'+', flags @ ..] if !flags.is_empty() => has_c |= a[0] == b'-' && flags.contains(&b'c'),
            _ => {
                // The first operand: the script when -c was given.
                if !has_c {
                    return not_a_shell();
                }
                return String::from_utf8(a.to_vec())
                    .map_err(|_| "a shell whose script is not valid UTF-8".to_string());
            }
        }
    }
    if has_c {
        if let Some(a) = it.next() {
            return String::from_utf8(a.to_vec()).map_err(|_| "a shell whose script is not valid UTF-8".to_string());
        }
    }
    not_a_shell()
}

/// The recipe script of the shell that runs kdthin-ld, taken apart on
/// first use. The parent's command line and ours arrive as data
/// ([`crate::env::Env`]).
pub struct ParentRecipe {
    recipe: OnceCell<Result<Recipe, String>>,
    parent: Option<(i32, Result<Vec<u8>, String>, Vec<OsString>)>,
}

/// A script and the arguments of the link it runs.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// `sh, pid 1234`: which process it came from, for messages.
    pub origin: String,
    pub script: String,
    /// kdthin-ld's own arguments (without the program name).
    pub link_args: Vec<String>,
}

impl ParentRecipe {
    /// From the parent process as [`crate::env::Env`] captured it, and
    /// this link's arguments (without the program name).
    pub fn new(parent: &crate::env::Parent, link_args: &[OsString]) -> ParentRecipe {
        ParentRecipe {
            recipe: OnceCell::new(),
            parent: Some((parent.pid, parent.cmdline().clone(), link_args.to_vec())),
        }
    }

    /// A fixed recipe (or reason there is none), for tests.
    pub fn with(recipe: Result<Recipe, String>) -> ParentRecipe {
        ParentRecipe { recipe: OnceCell::from(recipe), parent: None }
    }

    /// The compile of `obj` in the recipe running this link. The error is
    /// a phrase that starts with what it is about ("the recipe running this
    /// link (sh, pid 12) does not compile lib/x.o").
    pub fn compile_of(&self, obj: &Path) -> Result<(CompileCommand, &Recipe), String> {
        let recipe = self
            .recipe
            .get_or_init(|| match &self.parent {
                Some((pid, cmdline, args)) => recipe_of(*pid, cmdline, args),
                None => Err("no parent process".into()),
            })
            .as_ref()
            .map_err(Clone::clone)?;
        compile_in_script(&recipe.script, &recipe.link_args, obj)
            .map(|cc| (cc, recipe))
            .map_err(|why| format!("the recipe running this link ({}) {why}", recipe.origin))
    }
}

/// Our parent's script and our arguments.
fn recipe_of(ppid: i32, cmdline: &Result<Vec<u8>, String>, args: &[OsString]) -> Result<Recipe, String> {
    let parent = |why: String| format!("the parent process of this link (pid {ppid}) is {why}");
    let cmdline = cmdline.as_ref().map_err(|e| parent(format!("unknown: {e}")))?;
    let script = script_of_cmdline(cmdline).map_err(parent)?;
    let link_args = args
        .iter()
        .map(|a| a.to_str().map(str::to_string))
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| "this link has an argument that is not valid UTF-8".to_string())?;
    let shell = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let shell = String::from_utf8_lossy(shell.rsplit(|&b| b == b'/').next().unwrap_or(shell)).into_owned();
    Ok(Recipe { origin: format!("{shell}, pid {ppid}"), script, link_args })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recipes make ran for lib/crc-ccitt.o, a single-object module
    /// (see testdata/README.md).
    const R612: &str = include_str!("testdata/612-recipe-crc-ccitt.sh");
    const R612_V1: &str = include_str!("testdata/612-recipe-crc-ccitt-V1.sh");
    const R61: &str = include_str!("testdata/61-recipe-crc-ccitt.sh");
    const R61_SILENT: &str = include_str!("testdata/61-recipe-crc-ccitt-silent.sh");

    const OBJ: &str = "lib/crc-ccitt.o";

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// What kdthin-ld gets as arguments from these recipes.
    fn ld_args() -> Vec<String> {
        args("-m elf_x86_64 -mllvm -import-instr-limit=5 -z noexecstack -r -o lib/.tmp_crc-ccitt.o lib/crc-ccitt.o")
    }

    fn compile(script: &str) -> CompileCommand {
        compile_in_script(script, &ld_args(), Path::new(OBJ)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn refused(script: &str, obj: &str) -> String {
        compile_in_script(script, &ld_args(), Path::new(obj)).unwrap_err()
    }

    fn has(cc: &CompileCommand, flag: &str) -> bool {
        cc.flags.iter().any(|f| f == flag)
    }

    #[test]
    fn real_612_recipe() {
        let cc = compile(R612);
        assert_eq!(cc.compiler, "clang-22");
        assert_eq!(cc.output, Path::new(OBJ));
        assert_eq!(cc.source, Path::new("/var/tmp/kdthin-kernels/src/linux-source-6.12/lib/crc-ccitt.c"));
        assert!(has(&cc, r#"-DKBUILD_MODNAME="crc_ccitt""#), "{:?}", cc.flags);
        assert!(has(&cc, "-DMODULE") && has(&cc, "-flto=thin") && has(&cc, "-mcmodel=kernel"));
        assert_eq!(cc.flags[0], "-nostdinc", "-Wp,-MMD,... is dropped");
    }

    #[test]
    fn recipes_give_the_flags_the_cmd_file_records_afterwards() {
        // What fixdep writes into the .cmd file once the recipe is done
        // holds the same compile.
        let from_cmd = |text: &str| {
            let saved = crate::kbuild::cmdfile::parse_cmd_file(text, Path::new(OBJ)).unwrap();
            CompileCommand::parse(&crate::kbuild::shell::split_first_command(&saved).unwrap()).unwrap()
        };
        let cmd_612 = from_cmd(include_str!("testdata/612-lib-crc-ccitt.o.cmd"));
        let cmd_61 = from_cmd(include_str!("testdata/61-lib-crc-ccitt.o.cmd"));
        for (name, script, want) in [
            ("6.12", R612, &cmd_612),
            ("6.12 V=1", R612_V1, &cmd_612),
            ("6.1", R61, &cmd_61),
            ("6.1 make -s", R61_SILENT, &cmd_61),
        ] {
            let cc = compile_in_script(script, &ld_args_of(script), Path::new(OBJ))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&cc, want, "{name}");
        }
    }

    /// kdthin-ld's arguments in a recipe: the `$(LD)` command's.
    fn ld_args_of(script: &str) -> Vec<String> {
        let ld = script.split("; ").find(|c| c.contains(" -r -o lib/.tmp_crc-ccitt.o ")).unwrap();
        args(ld)[1..].to_vec()
    }

    #[test]
    fn real_61_recipes_quiet_and_silent() {
        // make -s: `exec >/dev/null;` (a redirection) before the traps.
        assert!(R61_SILENT.starts_with("set -e;  exec >/dev/null;   trap "));
        assert_eq!(ld_args_of(R61), ld_args());
        for script in [R61, R61_SILENT] {
            let cc = compile(script);
            assert_eq!(cc.compiler, "clang-14");
            assert!(has(&cc, r#"-DKBUILD_MODNAME="crc_ccitt""#));
        }
    }

    #[test]
    fn verbose_echo_holds_the_whole_command_in_quotes() {
        // V=1: `echo '  clang-22 ... -c -o lib/crc-ccitt.o ...; kdthin-ld ...'`
        assert!(R612_V1.contains("echo '  clang-22 -Wp,-MMD,lib/.crc-ccitt.o.d"));
        assert_eq!(compile(R612_V1), compile(R612));
    }

    #[test]
    fn same_object_spelled_differently() {
        let cc = compile_in_script(R612, &ld_args(), Path::new("./lib/x/../crc-ccitt.o")).unwrap();
        assert_eq!(cc.output, Path::new(OBJ));
        assert!(refused(R612, "lib/crc16.o").contains("does not compile lib/crc16.o"));
    }

    #[test]
    fn the_link_must_be_in_the_script_once() {
        let other = args("-r -o lib/.tmp_crc16.o lib/crc16.o");
        let err = compile_in_script(R612, &other, Path::new(OBJ)).unwrap_err();
        assert!(err.contains("does not run this link"), "{err}");
        // A link recipe (vmlinux.o) has no compile at all.
        let vmlinux =
            crate::kbuild::cmdfile::parse_cmd_file(include_str!("testdata/612-vmlinux.o.cmd"), Path::new("vmlinux.o"))
                .unwrap();
        let argv = crate::kbuild::shell::split_first_command(&vmlinux).unwrap();
        let err = compile_in_script(&vmlinux, &argv[1..], Path::new("init/main.o")).unwrap_err();
        assert_eq!(err, "does not compile init/main.o");
        let twice = "clang -c -o x.o x.c; ld -r -o t.o x.o; ld -r -o t.o x.o";
        let err = compile_in_script(twice, &args("-r -o t.o x.o"), Path::new("x.o")).unwrap_err();
        assert_eq!(err, "runs this link 2 times");
    }

    fn check(script: &str) -> Result<CompileCommand, String> {
        compile_in_script(script, &args("-r -o .tmp_x.o x.o"), Path::new("x.o"))
    }

    #[test]
    fn plain_recipes() {
        for script in [
            "clang -c -o x.o x.c; ld -r -o .tmp_x.o x.o; mv .tmp_x.o x.o",
            "set -e\nclang -c -o x.o x.c\nld.lld-22 -r -o .tmp_x.o x.o\n",
            "clang -c -o x.o x.c && /usr/bin/kdthin-ld -r -o .tmp_x.o x.o && mv .tmp_x.o x.o",
            "echo 'clang -c -o x.o x.c; ld'; clang -c -o x.o x.c 2>/dev/null; ld -r -o .tmp_x.o x.o",
            "# comment; clang -c -o x.o y.c\nclang -c -o x.o x.c # done\nld -r -o .tmp_x.o x.o | cat",
            // What follows the link does not matter.
            "clang -c -o x.o x.c; ld -r -o .tmp_x.o x.o; { printf x; } > .x.o.cmd; $(true) & wait",
        ] {
            let cc = check(script).unwrap_or_else(|e| panic!("{script:?}: {e}"));
            assert_eq!(cc.source, Path::new("x.c"), "{script:?}");
        }
    }

    #[test]
    fn ambiguous_recipes_are_refused() {
        for (script, why) in [
            ("ld -r -o .tmp_x.o x.o; clang -c -o x.o x.c", "only after this link"),
            ("clang -c -o x.o x.c; clang -O2 -c -o x.o x.c; ld -r -o .tmp_x.o x.o", "compiles x.o 2 times"),
            ("clang -c -o x.o x.c; ld -r -o .tmp_x.o x.o; clang -c -o x.o x.c", "compiles x.o 2 times"),
            ("clang -c -o y.o x.c; ld -r -o .tmp_x.o x.o", "does not compile x.o"),
            ("$CC -c -o x.o x.c; ld -r -o .tmp_x.o x.o", "cannot be followed: cannot evaluate parameter expansion"),
            ("CC=1 clang -c -o x.o x.c; ld -r -o .tmp_x.o x.o", "environment assignment"),
            ("if true; then clang -c -o x.o x.c; fi; ld -r -o .tmp_x.o x.o", "compound command"),
            ("for i in 1; do clang -c -o x.o x.c; ld -r -o .tmp_x.o x.o; done", "compound command"),
            ("(clang -c -o x.o x.c); ld -r -o .tmp_x.o x.o", "subshell"),
            ("{ clang -c -o x.o x.c; }; ld -r -o .tmp_x.o x.o", "brace group"),
            ("x=$(clang -c -o x.o x.c; ld -r -o .tmp_x.o x.o)", "does not run this link"),
            ("cat <<EOF\nEOF\nclang -c -o x.o x.c; ld -r -o .tmp_x.o x.o", "here-document"),
            ("clang -c -o x.o x.c & ld -r -o .tmp_x.o x.o", "with `&`"),
            ("false || clang -c -o x.o x.c; ld -r -o .tmp_x.o x.o", "with `||`"),
            ("clang -c -o x.o x.c | cat; ld -r -o .tmp_x.o x.o", "with `|`"),
            ("cd sub; clang -c -o x.o x.c; ld -r -o .tmp_x.o x.o", "runs `cd` before"),
            ("clang -c -o x.o x.c; eval x; ld -r -o .tmp_x.o x.o", "runs `eval` before"),
            ("clang -c -o x.o x.c; cp y.o x.o; ld -r -o .tmp_x.o x.o", "`cp y.o x.o` between the compile of x.o"),
            ("clang -c -o x.o 'x.c; ld -r -o .tmp_x.o x.o", "does not run this link"),
        ] {
            let err = check(script).map(|cc| format!("accepted: {cc:?}")).unwrap_or_else(|e| e);
            assert!(err.contains(why), "{script:?}: {err}");
        }
    }

    #[test]
    fn shell_command_lines() {
        let ok = |cmdline: &[u8]| script_of_cmdline(cmdline).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok(b"/bin/sh\0-c\0cc -c -o x.o x.c; ld -r x.o\0"), "cc -c -o x.o x.c; ld -r x.o");
        assert_eq!(ok(b"/bin/bash\0-e\0-o\0pipefail\0-c\0s\0"), "s");
        assert_eq!(ok(b"sh\0-ec\0s\0name\0arg\0"), "s");
        assert_eq!(ok(b"/usr/bin/dash\0-c\0--\0s\0"), "s");
        for bad in [
            &b"make\0-j2\0all\0"[..],
            b"/bin/sh\0./run-with\0kdthin-ld\0",
            b"/bin/sh\0-c\0",
            b"/bin/sh\0-e\0script.sh\0",
            b"",
            b"/usr/bin/cargo-test\0-c\0x\0",
        ] {
            let err = script_of_cmdline(bad).unwrap_err();
            assert!(err.starts_with("not a shell running a script"), "{err}");
        }
        assert!(script_of_cmdline(b"/bin/sh\0-c\0\xff\0").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn parent_recipe_messages() {
        let recipe = Recipe {
            origin: "sh, pid 7".into(),
            script: "clang -c -o x.o x.c; ld -r -o t.o x.o y.o".into(),
            link_args: args("-r -o t.o x.o y.o"),
        };
        let parent = ParentRecipe::with(Ok(recipe));
        let (cc, r) = parent.compile_of(Path::new("x.o")).unwrap();
        assert_eq!((cc.source.to_str().unwrap(), r.origin.as_str()), ("x.c", "sh, pid 7"));
        assert_eq!(
            parent.compile_of(Path::new("y.o")).unwrap_err(),
            "the recipe running this link (sh, pid 7) does not compile y.o"
        );
        let none = ParentRecipe::with(Err("the parent process of this link (pid 1) is not a shell".into()));
        assert!(none.compile_of(Path::new("x.o")).unwrap_err().ends_with("is not a shell"));
    }

    /// The parent arrives as data: a shell running a script, one that is
    /// not a shell, one whose command line could not be read.
    #[test]
    fn recipe_from_the_captured_parent() {
        let link: Vec<OsString> = ld_args().into_iter().map(OsString::from).collect();
        let mut cmdline = b"/bin/sh\0-c\0".to_vec();
        cmdline.extend_from_slice(R612.as_bytes());
        cmdline.push(0);
        let sh = crate::env::Parent::known(12, Ok(cmdline));
        let parent = ParentRecipe::new(&sh, &link);
        let (cc, recipe) = parent.compile_of(Path::new(OBJ)).unwrap();
        assert_eq!(recipe.origin, "sh, pid 12");
        assert!(has(&cc, "-mcmodel=kernel"), "{cc:?}");
        let make = crate::env::Parent::known(3, Ok(b"make\0-j2\0".to_vec()));
        let err = ParentRecipe::new(&make, &link).compile_of(Path::new(OBJ)).unwrap_err();
        assert!(err.contains("pid 3"), "{err}");
        let gone = crate::env::Parent::known(4, Err("/proc/4/cmdline: No such file".into()));
        let err = ParentRecipe::new(&gone, &link).compile_of(Path::new(OBJ)).unwrap_err();
        assert!(err.contains("/proc/4/cmdline"), "{err}");
    }
}

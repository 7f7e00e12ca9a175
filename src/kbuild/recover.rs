//! Which compile produced a bitcode object: its `.cmd` file, or, when that
//! is missing or stale, the recipe running the link (a single-object
//! module's `ld -r` runs inside its compile recipe, before kbuild writes
//! the `.cmd` file). Kept apart from [`super::compile`] (parsing a compile)
//! and [`super::recipe`] (reading a recipe), which it uses both of.

use std::path::{Path, PathBuf};

use super::cmdfile::{cmd_file_for, CmdFileError};
use super::compile::{lookup, CompileCommand};
use super::recipe::{ParentRecipe, Recipe};

/// Where the compile of a module came from.
#[derive(Debug)]
pub enum Source<'a> {
    /// Its `.cmd` file, the usual source.
    CmdFile(PathBuf),
    /// The recipe running this link (a single-object module's), because the
    /// `.cmd` file is missing or older than the object for this reason.
    Recipe { recipe: &'a Recipe, cmd: CmdFileError },
}

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::CmdFile(cmd) => write!(f, "{}", cmd.display()),
            Source::Recipe { recipe, cmd } => write!(f, "the recipe running this link ({}); {cmd}", recipe.origin),
        }
    }
}

/// The compile of the bitcode object `obj`: from its `.cmd` file or, when
/// that is missing or older than the object, from the recipe running this
/// link (see [`super::recipe`]). The error has both reasons.
pub fn recover<'a>(obj: &Path, parent: &'a ParentRecipe) -> Result<(CompileCommand, Source<'a>), String> {
    match lookup(obj) {
        Ok(cc) => Ok((cc, Source::CmdFile(cmd_file_for(obj)))),
        Err(cmd @ (CmdFileError::Missing { .. } | CmdFileError::Stale { .. })) => match parent.compile_of(obj) {
            Ok((cc, recipe)) => Ok((cc, Source::Recipe { recipe, cmd })),
            Err(why) => Err(format!("{cmd}; {why}")),
        },
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `.cmd` file first; the recipe only when that is missing or stale.
    #[test]
    fn recover_falls_back_to_the_recipe_only_for_missing_or_stale_cmd_files() {
        let dir = tempfile::tempdir().unwrap();
        let obj = dir.path().join("x.o");
        let o = obj.display();
        std::fs::write(&obj, b"BC\xC0\xDE").unwrap();
        let recipe = Recipe {
            origin: "sh, pid 7".into(),
            script: format!("clang -DFROM_RECIPE -c -o {o} x.c; ld -r -o t.o {o}; mv t.o {o}"),
            link_args: vec!["-r".into(), "-o".into(), "t.o".into(), o.to_string()],
        };
        let parent = ParentRecipe::with(Ok(recipe));
        let cmd = cmd_file_for(&obj);
        let from = |parent: &ParentRecipe| match recover(&obj, parent) {
            Ok((cc, Source::CmdFile(_))) => format!("cmd {}", cc.flags[0].to_string_lossy()),
            Ok((cc, src @ Source::Recipe { .. })) => format!("recipe {} {src}", cc.flags[0].to_string_lossy()),
            Err(e) => format!("error {e}"),
        };

        let got = from(&parent);
        assert!(got.starts_with("recipe -DFROM_RECIPE the recipe running this link (sh, pid 7); "), "{got}");
        assert!(got.ends_with(".x.o.cmd: no such file"), "{got}");

        let write_cmd = |text: String, age: std::time::Duration| {
            std::fs::write(&cmd, text).unwrap();
            let t = std::fs::metadata(&obj).unwrap().modified().unwrap();
            std::fs::File::options().write(true).open(&cmd).unwrap().set_modified(t - age).unwrap();
        };
        let saved = format!("savedcmd_{o} := clang -DFROM_CMD -c -o {o} x.c\n");
        write_cmd(saved.clone(), std::time::Duration::ZERO);
        assert_eq!(from(&parent), "cmd -DFROM_CMD");
        write_cmd(saved, std::time::Duration::from_secs(1));
        let got = from(&parent);
        assert!(got.starts_with("recipe -DFROM_RECIPE ") && got.contains("is older than"), "{got}");
        // An unparsable .cmd file is not a reason to look elsewhere.
        write_cmd("garbage\n".into(), std::time::Duration::ZERO);
        let got = from(&parent);
        assert!(got.starts_with("error ") && got.contains("no `savedcmd_"), "{got}");
        // Both reasons when neither source works.
        std::fs::remove_file(&cmd).unwrap();
        let none = ParentRecipe::with(Err("the parent process of this link (pid 1) is not a shell".into()));
        let got = from(&none);
        assert!(
            got.ends_with(".x.o.cmd: no such file; the parent process of this link (pid 1) is not a shell"),
            "{got}"
        );
    }
}

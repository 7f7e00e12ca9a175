//! Recovering per-object compiler flags from kbuild's `.<obj>.cmd` files
//! and turning them into a ThinLTO backend command.
//!
//! - [`cmdfile`]: find the `.cmd` file, check it is current, undo make's
//!   escaping.
//! - [`shell`]: split the recorded shell command into the compiler's argv.
//! - [`compile`]: pick the compile apart and build the backend command.
//! - [`clang_options`]: the tables of clang options both of those (and
//!   the remote action builder) read.
//! - [`recipe`]: when the `.cmd` file is missing or stale (a single-object
//!   module is linked inside its compile recipe, before kbuild writes it),
//!   find the compile in the script of the recipe running the link.
//! - [`recover`]: which of the two gives an object's compile.

pub mod clang_options;
pub mod cmdfile;
pub mod compile;
pub mod recipe;
pub mod recover;
pub mod shell;

pub use cmdfile::{cmd_file_for, read_command_for, CmdFileError};
pub use compile::{lookup, BackendFiles, CompileCommand};
pub use recipe::ParentRecipe;
pub use recover::{recover, Source};

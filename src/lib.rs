//! kdthin-ld: distributed ThinLTO for kbuild as an `LD=` interposer.
//!
//! Stages, each in its own module:
//! - [`args`]: lossless model of the ld command line (table-driven).
//! - [`input`]: classify inputs by content (bitcode, ELF, archives, scripts).
//! - [`kbuild`]: recover per-object compile flags from kbuild `.cmd` files.
//! - [`plan`]: pure planning: what to run, derived from argv + file facts.
//! - [`exec`]: side effects: jobserver, parallel backend jobs, signals.
//! - [`remote`]: backends as REAPI actions on a remote execution service.
//! - [`toolchain`]: locate the real ld.lld.
//! - [`driver`]: drives one link end to end, in stages.

// Writing to a closed stderr or stdout must not turn a failure into an
// abort: std's eprintln!/println! panic when the write fails ("failed
// printing to stderr"), and with `panic = "abort"` a link that should exit
// 1 would die with SIGABRT (status 134) and leave its work directories.
// These shadow std's macros in every module below (a macro_rules! macro
// in textual scope wins over the prelude's) and drop write errors: kbuild
// reads our exit status, not our messages, and there is nowhere else to
// report them.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod args;
pub mod cache;
pub mod driver;
pub mod env;
pub mod exec;
pub mod input;
pub mod kbuild;
pub mod paths;
pub mod plan;
pub mod private_dir;
pub mod remote;
pub mod report;
pub mod settings;
pub mod switch;
pub mod thin_archive;
pub mod toolchain;

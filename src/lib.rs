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
//! - [`link`]: drives one distributed link end to end.

pub mod args;
pub mod backends;
pub mod cache;
pub mod dtlto;
pub mod exec;
pub mod input;
pub mod kbuild;
pub mod link;
pub mod link_memo;
pub mod paths;
pub mod plan;
pub mod remote;
pub mod report;
pub mod thin_archive;
pub mod toolchain;

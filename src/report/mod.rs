//! What a link tells people about itself, beyond its exit status.
//!
//! - [`trace`]: a Chrome trace of the link (`KDTHIN_TRACE`), where the time
//!   went, one lane per worker.
//! - [`summary`]: a JSON report per link (`KDTHIN_REPORT`) and the text
//!   summary `kdthin report` prints from a report or a trace.
//! - [`progress`]: the live `[123/539]` line on a terminal.
//! - [`recorder`]: the one object the link driver feeds; it keeps the
//!   three in step.
//! - [`savedir`]: a replayable copy of a link's inputs and commands
//!   (`KDTHIN_SAVE_DIR`), for bug reports.
//!
//! Several links share one `KDTHIN_TRACE` / `KDTHIN_REPORT` value in a
//! build (vmlinux.o and the modules, often concurrently). Both files are
//! appended to, one link at a time under `flock`, and never rewritten:
//! the report is JSON Lines, the trace a JSON array left open. A directory
//! as `KDTHIN_TRACE` gets one trace file per link instead.

pub mod progress;
pub mod recorder;
pub mod savedir;
pub mod summary;
pub mod trace;

pub use recorder::{LinkRecorder, ReportSettings};
pub use summary::{summarize, LinkReport};

/// Span names and categories the recorder writes and the summariser reads.
pub mod names {
    /// The whole link, around the phases; its args hold the outcome.
    pub const LINK: &str = "link";
    pub const THIN_LINK: &str = "thin-link";
    pub const BACKENDS: &str = "backends";
    pub const FINAL_LINK: &str = "final link";
    pub const CACHE_HIT: &str = "cache hit";
    /// The link's own phases, on the main lane.
    pub const CAT_LINK: &str = "link";
    /// One backend compile, on its worker's lane.
    pub const CAT_BACKEND: &str = "backend";
    /// A backend answered from the cache.
    pub const CAT_CACHE: &str = "cache";
}

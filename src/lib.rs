//! kdthin-ld: distributed ThinLTO for kbuild as an `LD=` interposer.

pub mod args;
pub mod exec;
pub mod input;
pub mod kbuild;
pub mod paths;

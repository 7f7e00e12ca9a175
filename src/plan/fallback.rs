//! Why a link with bitcode is linked in-process by ld.lld after all: a
//! category (counted in reports, like sccache's `CannotCache` kinds) with
//! the detail a user needs to act on it.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The command line asks for something the distributed path cannot
    /// reproduce exactly (an option, an input).
    CommandLine(String),
    /// An object's own compile flags could not be recovered (no usable
    /// `.cmd` file, no recipe that compiles it).
    CompileFlags(String),
    /// The link's work directory could not be created.
    WorkDir(String),
    /// A module is not ThinLTO bitcode (full LTO cannot be split).
    NotThinLto(String),
}

impl Fallback {
    /// Every category, in report order.
    pub const CATEGORIES: [&'static str; 4] = ["command-line", "compile-flags", "work-dir", "not-thinlto"];

    /// Short and stable: reports and `kdthin report` count by it.
    pub fn category(&self) -> &'static str {
        match self {
            Fallback::CommandLine(_) => Self::CATEGORIES[0],
            Fallback::CompileFlags(_) => Self::CATEGORIES[1],
            Fallback::WorkDir(_) => Self::CATEGORIES[2],
            Fallback::NotThinLto(_) => Self::CATEGORIES[3],
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Fallback::CommandLine(d) | Fallback::CompileFlags(d) | Fallback::WorkDir(d) | Fallback::NotThinLto(d) => d,
        }
    }
}

/// The detail alone: the line a user reads already says "linking
/// in-process".
impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.detail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_distinct_and_listed() {
        let all = [
            Fallback::CommandLine("a".into()),
            Fallback::CompileFlags("b".into()),
            Fallback::WorkDir("c".into()),
            Fallback::NotThinLto("d".into()),
        ];
        let cats: Vec<&str> = all.iter().map(Fallback::category).collect();
        assert_eq!(cats, Fallback::CATEGORIES);
        assert_eq!(all[1].to_string(), "b");
    }
}

//! Word splitting for the first simple command of a `/bin/sh -c` string.
//!
//! make runs kbuild recipes with `/bin/sh` (kbuild does not set `SHELL`), so
//! a recorded command is POSIX shell text. We need only the compiler's argv,
//! which is the first simple command: `clang ... -c -o x.o x.c ; objtool ...`.
//!
//! Only quote removal is implemented. Expansions (`$VAR`, `$(...)`,
//! backticks, globs, `~`) and redirections are rejected with an error naming
//! the construct: their result depends on the environment, the file system
//! and the shell of the original make run, none of which we can reproduce
//! faithfully. A wrong guess would compile the backend with different flags
//! and nobody would notice; an error makes the caller fall back to a slower
//! but correct link. kbuild's compile commands never need any of these.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellError {
    /// The first command has no words (empty input, or it starts with `;`).
    Empty,
    /// A quote opened at byte `at` is never closed.
    Unterminated { quote: char, at: usize },
    /// A construct at byte `at` we refuse to evaluate.
    Unsupported { construct: &'static str, at: usize },
}

impl fmt::Display for ShellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShellError::Empty => write!(f, "empty shell command"),
            ShellError::Unterminated { quote, at } => {
                write!(f, "unterminated {quote} quote starting at byte {at}")
            }
            ShellError::Unsupported { construct, at } => {
                write!(f, "cannot evaluate {construct} at byte {at} of the shell command")
            }
        }
    }
}

impl std::error::Error for ShellError {}

/// Shell reserved words: as the first word they start a compound command,
/// not a simple one.
const RESERVED: &[&str] =
    &["!", "case", "do", "done", "elif", "else", "esac", "fi", "for", "if", "in", "then", "until", "while", "}"];

/// Split the first simple command of `cmd` into words, with quotes removed.
/// It ends at an unquoted `;`, `&`, `&&`, `|`, `||`, newline or comment;
/// the rest of the string is ignored.
pub fn split_first_command(cmd: &str) -> Result<Vec<String>, ShellError> {
    let b = cmd.as_bytes();
    let unsupported = |construct, at| Err(ShellError::Unsupported { construct, at });
    let mut words: Vec<String> = Vec::new();
    // `Some` once a word has started: `''` is a word, even though empty.
    let mut word: Option<Vec<u8>> = None;
    let mut word_start = 0;
    // Whether any part of the current word was quoted or escaped.
    let mut quoted = false;
    let mut i = 0;

    while let Some(&c) = b.get(i) {
        if word.is_none() && !matches!(c, b' ' | b'\t') {
            word_start = i;
            quoted = false;
            if words.is_empty() && is_assignment(&b[i..]) {
                return unsupported("an environment assignment before the command", i);
            }
        }
        match c {
            b' ' | b'\t' => {
                if let Some(w) = word.take() {
                    finish_word(&mut words, w, quoted, word_start)?;
                }
                i += 1;
                continue;
            }
            // `&&`, `||` and `|` end the first command just like `;` does.
            b';' | b'&' | b'|' | b'\n' => break,
            b'#' if word.is_none() => break, // comment to end of line
            b'\\' => {
                quoted = true;
                match b.get(i + 1) {
                    None => return unsupported("a backslash at the end of the command", i),
                    // Line continuation: removed, does not split the word.
                    Some(b'\n') => {}
                    Some(&n) => word.get_or_insert_with(Vec::new).push(n),
                }
                i += 2;
                continue;
            }
            b'\'' => {
                quoted = true;
                let end = b[i + 1..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .ok_or(ShellError::Unterminated { quote: '\'', at: i })?;
                word.get_or_insert_with(Vec::new).extend_from_slice(&b[i + 1..i + 1 + end]);
                i += end + 2;
                continue;
            }
            b'"' => {
                quoted = true;
                let w = word.get_or_insert_with(Vec::new);
                i = double_quoted(b, i, w)?;
                continue;
            }
            b'$' => {
                if let Some(construct) = dollar_expansion(b, i, false) {
                    return unsupported(construct, i);
                }
            }
            b'`' => return unsupported("command substitution `...`", i),
            b'<' | b'>' => return unsupported("a redirection", i),
            b'(' | b')' => return unsupported("a subshell or function definition", i),
            b'*' | b'?' | b'[' => return unsupported("a pathname pattern (glob)", i),
            // A group `{ ...; }`, or, in bash (/bin/sh on some distributions),
            // a brace expansion `a{b,c}`.
            b'{' => return unsupported("a brace group or brace expansion", i),
            b'~' if word.is_none() => return unsupported("tilde expansion", i),
            _ => {}
        }
        word.get_or_insert_with(Vec::new).push(c);
        i += 1;
    }
    if let Some(w) = word {
        finish_word(&mut words, w, quoted, word_start)?;
    }
    if words.is_empty() {
        return Err(ShellError::Empty);
    }
    Ok(words)
}

fn finish_word(words: &mut Vec<String>, w: Vec<u8>, quoted: bool, at: usize) -> Result<(), ShellError> {
    // Splitting happens only at ASCII bytes, so a word of a &str is UTF-8.
    let w = String::from_utf8(w).expect("split at ASCII bytes only");
    if words.is_empty() && !quoted && RESERVED.contains(&w.as_str()) {
        return Err(ShellError::Unsupported { construct: "a compound command", at });
    }
    words.push(w);
    Ok(())
}

/// `NAME=...` with an unquoted name: a variable assignment, not a word.
fn is_assignment(b: &[u8]) -> bool {
    let name_len = b.iter().take_while(|&&c| c.is_ascii_alphanumeric() || c == b'_').count();
    name_len > 0 && !b[0].is_ascii_digit() && b.get(name_len) == Some(&b'=')
}

/// Parse the double-quoted string starting at `b[open] == '"'` into `w`;
/// returns the index after the closing quote.
fn double_quoted(b: &[u8], open: usize, w: &mut Vec<u8>) -> Result<usize, ShellError> {
    let mut i = open + 1;
    loop {
        match b.get(i) {
            None => return Err(ShellError::Unterminated { quote: '"', at: open }),
            Some(b'"') => return Ok(i + 1),
            // Inside double quotes a backslash escapes only these; before
            // anything else it is an ordinary character.
            Some(b'\\') => match b.get(i + 1) {
                Some(&n @ (b'$' | b'`' | b'"' | b'\\')) => {
                    w.push(n);
                    i += 2;
                }
                Some(b'\n') => i += 2,
                _ => {
                    w.push(b'\\');
                    i += 1;
                }
            },
            Some(b'$') => {
                if let Some(construct) = dollar_expansion(b, i, true) {
                    return Err(ShellError::Unsupported { construct, at: i });
                }
                w.push(b'$');
                i += 1;
            }
            Some(b'`') => return Err(ShellError::Unsupported { construct: "command substitution `...`", at: i }),
            Some(&c) => {
                w.push(c);
                i += 1;
            }
        }
    }
}

/// What the `$` at `b[i]` starts, if it is an expansion; `None` when the
/// shell takes it literally (`$` before a space, `/`, `=`, the end, ...).
fn dollar_expansion(b: &[u8], i: usize, in_double_quotes: bool) -> Option<&'static str> {
    match b.get(i + 1)? {
        b'(' => Some("command substitution or arithmetic $(...)"),
        b'{' => Some("parameter expansion ${...}"),
        c if c.is_ascii_alphabetic() || *c == b'_' => Some("parameter expansion $NAME"),
        c if c.is_ascii_digit() || b"@*#?-$!".contains(c) => Some("special parameter expansion"),
        // dash takes these literally, bash as $'...' / $"..." quoting.
        b'\'' | b'"' if !in_double_quotes => Some("bash $'...' or $\"...\" quoting"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_first_command(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn unsupported(s: &str) -> &'static str {
        match split_first_command(s) {
            Err(ShellError::Unsupported { construct, .. }) => construct,
            other => panic!("{s:?}: expected Unsupported, got {other:?}"),
        }
    }

    #[test]
    fn plain_words_and_blanks() {
        assert_eq!(split("  clang  -c\t-o x.o   x.c  "), ["clang", "-c", "-o", "x.o", "x.c"]);
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(split(r#"cc -DX='"a b" $Y \n'"#), ["cc", r#"-DX="a b" $Y \n"#]);
        // kbuild's KBUILD_MODNAME and wireguard's pr_fmt
        assert_eq!(
            split(r#"cc -DKBUILD_MODNAME='"main"' -D'pr_fmt(fmt)=KBUILD_MODNAME ": " fmt' -c"#),
            ["cc", r#"-DKBUILD_MODNAME="main""#, r#"-Dpr_fmt(fmt)=KBUILD_MODNAME ": " fmt"#, "-c"]
        );
    }

    #[test]
    fn double_quotes_keep_most_backslashes() {
        assert_eq!(split(r#"cc "-DA=\"x\"" "a\b" "\$\`\\""#), ["cc", r#"-DA="x""#, r"a\b", r"$`\"]);
        assert_eq!(split(r#"cc -D"BUILD_STR(s)=#s""#), ["cc", "-DBUILD_STR(s)=#s"]);
        assert_eq!(split("cc \"a\\\nb\""), ["cc", "ab"]);
    }

    #[test]
    fn backslash_outside_quotes() {
        assert_eq!(split(r"cc a\ b \; \$x"), ["cc", "a b", ";", "$x"]);
        assert_eq!(split("cc a\\\nb"), ["cc", "ab"]);
    }

    #[test]
    fn empty_quoted_words_survive() {
        assert_eq!(split("cc '' \"\" x"), ["cc", "", "", "x"]);
    }

    #[test]
    fn stops_at_the_first_command() {
        for s in [
            "cc -c x.c ; objtool x.o",
            "cc -c x.c;objtool",
            "cc -c x.c && mv a b",
            "cc -c x.c || true",
            "cc -c x.c | cat",
            "cc -c x.c & wait",
            "cc -c x.c\nnext",
            "cc -c x.c # comment",
        ] {
            assert_eq!(split(s), ["cc", "-c", "x.c"], "{s:?}");
        }
        // Quoted or mid-word, these are ordinary characters.
        assert_eq!(split("cc ';' a#b '|'"), ["cc", ";", "a#b", "|"]);
    }

    #[test]
    fn literal_dollars() {
        assert_eq!(split("echo $ a$ $/x a=$"), ["echo", "$", "a$", "$/x", "a=$"]);
        assert_eq!(split(r#"echo "$ x""#), ["echo", "$ x"]);
    }

    #[test]
    fn unterminated_quotes() {
        assert_eq!(split_first_command("cc 'abc"), Err(ShellError::Unterminated { quote: '\'', at: 3 }));
        assert_eq!(split_first_command("cc \"abc"), Err(ShellError::Unterminated { quote: '"', at: 3 }));
        assert_eq!(split_first_command("cc \"a\\\""), Err(ShellError::Unterminated { quote: '"', at: 3 }));
    }

    #[test]
    fn expansions_are_refused() {
        assert_eq!(unsupported("cc $(pwd)/x.c"), "command substitution or arithmetic $(...)");
        assert_eq!(unsupported("cc \"$(pwd)\""), "command substitution or arithmetic $(...)");
        assert_eq!(unsupported("cc `pwd`"), "command substitution `...`");
        assert_eq!(unsupported("cc \"`pwd`\""), "command substitution `...`");
        assert_eq!(unsupported("cc $CFLAGS"), "parameter expansion $NAME");
        assert_eq!(unsupported("cc \"${X}\""), "parameter expansion ${...}");
        assert_eq!(unsupported("cc $1"), "special parameter expansion");
        assert_eq!(unsupported("cc $$"), "special parameter expansion");
        assert_eq!(unsupported("cc $'\\n'"), "bash $'...' or $\"...\" quoting");
        assert_eq!(unsupported("cc *.c"), "a pathname pattern (glob)");
        assert_eq!(unsupported("cc ~/x.c"), "tilde expansion");
        assert_eq!(unsupported("cc a{b,c}"), "a brace group or brace expansion");
        assert_eq!(unsupported("cc x.c > log"), "a redirection");
        assert_eq!(unsupported("(cc x.c)"), "a subshell or function definition");
    }

    #[test]
    fn only_the_first_command_is_checked() {
        // kbuild's .vmlinux.a.cmd: the substitutions are in a later command.
        let text = include_str!("testdata/612-vmlinux.a.cmd");
        let cmd = crate::kbuild::cmdfile::parse_cmd_file(text, std::path::Path::new("vmlinux.a")).unwrap();
        assert!(cmd.contains(" $(llvm-ar-22 t vmlinux.a | sed -n 1p) "), "{cmd}");
        assert_eq!(split(&cmd), ["rm", "-f", "vmlinux.a"]);
    }

    #[test]
    fn assignments_and_compound_commands_are_refused() {
        assert_eq!(unsupported("CCACHE_DIR=/x ccache clang -c x.c"), "an environment assignment before the command");
        assert_eq!(unsupported("if true; then cc; fi"), "a compound command");
        assert_eq!(unsupported("{ cc; }"), "a brace group or brace expansion");
        // Not assignments: quoted name, or `=` not after a name.
        assert_eq!(split("'A'=1 cc"), ["A=1", "cc"]);
        assert_eq!(split("cc -DA=1 B=2"), ["cc", "-DA=1", "B=2"]);
        assert_eq!(split("'if' x"), ["if", "x"]);
    }

    #[test]
    fn empty_commands() {
        assert_eq!(split_first_command(""), Err(ShellError::Empty));
        assert_eq!(split_first_command("   "), Err(ShellError::Empty));
        assert_eq!(split_first_command("; cc"), Err(ShellError::Empty));
        assert_eq!(split_first_command("# only a comment"), Err(ShellError::Empty));
    }

    #[test]
    fn trailing_backslash() {
        assert_eq!(unsupported("cc x\\"), "a backslash at the end of the command");
    }

    #[test]
    fn utf8_words() {
        assert_eq!(split("cc 'é ü' ñ.c"), ["cc", "é ü", "ñ.c"]);
    }

    /// Differential test: /bin/sh, which runs kbuild's commands, splits
    /// these the same way (checked by replacing the command with a function
    /// that prints its arguments).
    #[test]
    fn agrees_with_bin_sh() {
        if !std::path::Path::new("/bin/sh").exists() {
            eprintln!("skipped: no /bin/sh");
            return;
        }
        let fixtures = [
            (include_str!("testdata/612-lib-union_find.o.cmd"), "lib/union_find.o"),
            (include_str!("testdata/61-wireguard-main.o.cmd"), "drivers/net/wireguard/main.o"),
            (include_str!("testdata/612-tools-objtool-weak.o.cmd"), "tools/objtool/weak.o"),
            (include_str!("testdata/612-single-obj-module.o.cmd"), "drivers/net/dummy.o"),
        ];
        let mut cases: Vec<String> = fixtures
            .iter()
            .map(|(text, target)| {
                let cmd = crate::kbuild::cmdfile::parse_cmd_file(text, std::path::Path::new(target)).unwrap();
                // Drop the compiler word; the function stands in for it.
                cmd.split_once(' ').unwrap().1.to_string()
            })
            .collect();
        cases.extend(
            [
                r#"-D'pr_fmt(fmt)=KBUILD_MODNAME ": " fmt' -DKBUILD_MODNAME='"m"'"#,
                r#""-DA=\"x\"" "a\b" "\$\`\\" 'a\b'"#,
                r"a\ b \; \$x \\ \'",
                r#"'' "" x''y"#,
                r#"$ a$ $/x a=$ "$ x" "a$""#,
                "\"a\\\nb\" a\\\nb",
                r#"-D"BUILD_STR(s)=#s" a#b"#,
                "'é ü' ñ",
                "x ; y",
                "x&&y",
                "x || y",
                "x | cat",
                "x # y",
            ]
            .map(String::from),
        );
        for args in cases {
            let ours = split(&format!("kbprint {args}"));
            let script = format!("kbprint() {{ printf '%s\\0' \"$@\"; exit 0; }}; kbprint {args}");
            let out = std::process::Command::new("/bin/sh").arg("-c").arg(&script).output().unwrap();
            let stdout = String::from_utf8(out.stdout).unwrap();
            let theirs: Vec<&str> = stdout.split_terminator('\0').collect();
            assert_eq!(ours[1..], theirs, "{args}");
        }
    }
}

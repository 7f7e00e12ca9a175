//! Word splitting of `/bin/sh -c` strings: the first simple command of a
//! recorded command ([`split_first_command`]), or every simple command of a
//! recipe script ([`split_script`]).
//!
//! make runs kbuild recipes with `/bin/sh` (kbuild does not set `SHELL`), so
//! a recorded command is POSIX shell text. From a `.cmd` file we need only
//! the compiler's argv, which is the first simple command:
//! `clang ... -c -o x.o x.c ; objtool ...`. From the script of the recipe
//! that runs a link (see [`super::recipe`]) we need each command's words and
//! how it is joined to the next one.
//!
//! Only quote removal is implemented. Expansions (`$VAR`, `$(...)`,
//! backticks, globs, `~`) are rejected with an error naming the construct:
//! their result depends on the environment, the file system and the shell of
//! the original make run, none of which we can reproduce faithfully. A wrong
//! guess would compile the backend with different flags and nobody would
//! notice; an error makes the caller fall back to a slower but correct link.
//! kbuild's compile commands never need any of these. Redirections are
//! rejected in a `.cmd` command too; in a script they are recognised (and
//! left out of the words), since kbuild's recipes write the `.cmd` file with
//! one (`fixdep ... > .x.o.cmd`) and `make -s` adds `exec >/dev/null`.

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
    let words = lex_command(cmd.as_bytes(), 0, false)?.0;
    if words.is_empty() {
        return Err(ShellError::Empty);
    }
    Ok(words)
}

/// How a command of a script is joined to the one after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sep {
    /// `;`, a newline, or the end of the script.
    Seq,
    /// `&&`
    And,
    /// `||`
    Or,
    /// `|`
    Pipe,
    /// `&`
    Background,
}

/// One simple command of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptCommand {
    /// Byte offset of its first character in the script.
    pub at: usize,
    /// Its words with quotes removed and redirections left out, or why they
    /// cannot be known (an expansion, a compound command, ...).
    pub words: Result<Vec<String>, ShellError>,
    /// What joins it to the next command.
    pub then: Sep,
}

/// Split a whole `/bin/sh -c` script into its simple commands, in order.
///
/// A command whose words cannot be known is kept, with the error, and the
/// split goes on after it at the next unquoted `;`, `&`, `|` or newline
/// outside parentheses. That resynchronisation is approximate (a compound
/// command, a `$(...)` or a here-document holds commands of its own), so a
/// caller must not trust anything that comes after such a command.
/// Empty commands (blank lines, comments) are left out.
pub fn split_script(script: &str) -> Vec<ScriptCommand> {
    let b = script.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b' ' | b'\t' | b'\n' | b';' => {
                i += 1;
                continue;
            }
            b'#' => {
                i = end_of_line(b, i);
                continue;
            }
            _ => {}
        }
        let at = i;
        let (words, mut end) = match lex_command(b, at, true) {
            Ok((words, end)) => (Ok(words), end),
            Err(e) => (Err(e), skip_command(b, at)),
        };
        if b.get(end) == Some(&b'#') {
            end = end_of_line(b, end);
        }
        let (then, len) = match (b.get(end), b.get(end + 1)) {
            (Some(b'&'), Some(b'&')) => (Sep::And, 2),
            (Some(b'|'), Some(b'|')) => (Sep::Or, 2),
            (Some(b'&'), _) => (Sep::Background, 1),
            (Some(b'|'), _) => (Sep::Pipe, 1),
            (Some(_), _) => (Sep::Seq, 1),
            (None, _) => (Sep::Seq, 0),
        };
        if !matches!(&words, Ok(w) if w.is_empty()) {
            out.push(ScriptCommand { at, words, then });
        }
        i = end + len;
    }
    out
}

/// The index of the newline that ends the line holding `b[i]` (or the end).
fn end_of_line(b: &[u8], i: usize) -> usize {
    b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |n| i + n)
}

/// Where the command starting at `b[start]` ends, for one whose words could
/// not be read: the next unquoted `;`, `&`, `|` or newline outside
/// parentheses, or the end of the script.
fn skip_command(b: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => i += 1,
            b'\'' | b'`' => {
                i = b[i + 1..].iter().position(|&x| x == c).map_or(b.len(), |n| i + 1 + n);
            }
            b'"' => {
                i += 1;
                while let Some(&x) = b.get(i) {
                    match x {
                        b'\\' => i += 1,
                        b'"' => break,
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'#' if i == start || matches!(b[i - 1], b' ' | b'\t') => {
                i = end_of_line(b, i);
                continue;
            }
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b';' | b'&' | b'|' | b'\n' if depth == 0 => return i,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// The words of the simple command starting at `b[start]`, and the index of
/// what ended it: an unquoted `;`, `&`, `|`, newline or comment, or the end.
/// With `redirections`, `[n]>file` and the like are skipped; without, they
/// are an error.
fn lex_command(b: &[u8], start: usize, redirections: bool) -> Result<(Vec<String>, usize), ShellError> {
    let unsupported = |construct, at| Err(ShellError::Unsupported { construct, at });
    let mut words: Vec<String> = Vec::new();
    // `Some` once a word has started: `''` is a word, even though empty.
    let mut word: Option<Vec<u8>> = None;
    let mut word_start = start;
    // Whether any part of the current word was quoted or escaped.
    let mut quoted = false;
    // The next word is the target of a redirection, not an argument.
    let mut target = false;
    let mut i = start;

    while let Some(&c) = b.get(i) {
        if word.is_none() && !matches!(c, b' ' | b'\t') {
            word_start = i;
            quoted = false;
            if words.is_empty() && !target && is_assignment(&b[i..]) {
                return unsupported("an environment assignment before the command", i);
            }
        }
        match c {
            b' ' | b'\t' => {
                if let Some(w) = word.take() {
                    end_word(&mut words, w, quoted, word_start, &mut target)?;
                }
                i += 1;
                continue;
            }
            // `&&`, `||` and `|` end the command just like `;` does.
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
            b'<' | b'>' if !redirections => return unsupported("a redirection", i),
            b'<' | b'>' => {
                if target && word.is_none() {
                    return unsupported("a redirection without a target", i);
                }
                match word.take() {
                    // `2>`: an unquoted number right before is the descriptor.
                    Some(w) if !quoted && w.iter().all(u8::is_ascii_digit) => {}
                    Some(w) => end_word(&mut words, w, quoted, word_start, &mut target)?,
                    None => {}
                }
                i += match (c, b.get(i + 1)) {
                    (b'<', Some(b'<')) => return unsupported("a here-document", i),
                    (b'>', Some(b'>' | b'|' | b'&')) | (b'<', Some(b'&' | b'>')) => 2,
                    _ => 1,
                };
                target = true;
                continue;
            }
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
        end_word(&mut words, w, quoted, word_start, &mut target)?;
    }
    if target {
        return unsupported("a redirection without a target", i);
    }
    Ok((words, i))
}

/// A word is complete: an argument, or the target of a redirection (dropped).
fn end_word(words: &mut Vec<String>, w: Vec<u8>, quoted: bool, at: usize, target: &mut bool) -> Result<(), ShellError> {
    if std::mem::take(target) {
        return Ok(());
    }
    finish_word(words, w, quoted, at)
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

    fn words_of(script: &str) -> Vec<(Vec<String>, Sep)> {
        split_script(script)
            .into_iter()
            .map(|c| (c.words.unwrap_or_else(|e| panic!("{script:?}: {e}")), c.then))
            .collect()
    }

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn script_commands_and_separators() {
        assert_eq!(
            words_of("set -e; a 'b; c' && d || e | f & g\nh;i # j; k\n\n  ;l"),
            [
                (w("set -e"), Sep::Seq),
                (vec!["a".into(), "b; c".into()], Sep::And),
                (w("d"), Sep::Or),
                (w("e"), Sep::Pipe),
                (w("f"), Sep::Background),
                (w("g"), Sep::Seq),
                (w("h"), Sep::Seq),
                (w("i"), Sep::Seq),
                (w("l"), Sep::Seq),
            ]
        );
        let cmds = split_script("  x y;z");
        assert_eq!((cmds[0].at, cmds[1].at), (2, 6));
        assert!(split_script(" ;\n# only a comment\n").is_empty());
    }

    #[test]
    fn script_redirections_are_not_words() {
        assert_eq!(
            words_of("exec >/dev/null; a 2>&1 b >>'o g' <in c 3<>f d>e; f >|g; h 12>x"),
            [(w("exec"), Sep::Seq), (w("a b c d"), Sep::Seq), (w("f"), Sep::Seq), (w("h"), Sep::Seq),]
        );
        // A quoted or non-numeric word before `>` is an argument.
        assert_eq!(words_of("a '2'>x a1>y")[0].0, w("a 2 a1"));
        for (script, construct) in [
            ("cat <<EOF", "a here-document"),
            ("a >", "a redirection without a target"),
            ("a > ;", "a redirection without a target"),
            ("a > > x", "a redirection without a target"),
            ("a > $X", "parameter expansion $NAME"),
        ] {
            match &split_script(script)[0].words {
                Err(ShellError::Unsupported { construct: c, .. }) => assert_eq!(*c, construct, "{script:?}"),
                other => panic!("{script:?}: {other:?}"),
            }
        }
        // A .cmd file's first command still refuses them.
        assert_eq!(unsupported("cc x.c 2>/dev/null"), "a redirection");
    }

    #[test]
    fn script_resynchronises_after_what_it_cannot_read() {
        let cmds = split_script("x=$(a; b) c; { d; e; } > f; g \"$(h; i)\"; j 'k; l\n");
        let shown: Vec<String> = cmds
            .iter()
            .map(|c| match &c.words {
                Ok(w) => w.join(" "),
                Err(_) => format!("?{}", c.at),
            })
            .collect();
        assert_eq!(shown, ["?0", "?13", "e", "?21", "?28", "?41"]);
    }

    /// The real kbuild recipes (kbuild/testdata/*-recipe-*.sh), run by
    /// /bin/sh with the programs replaced by a function that prints its
    /// arguments: the same commands, with the same words, in the same order.
    #[test]
    fn script_agrees_with_bin_sh() {
        if !std::path::Path::new("/bin/sh").exists() {
            eprintln!("skipped: no /bin/sh");
            return;
        }
        let programs = [
            "clang-22 ",
            "clang-14 ",
            "/check/work/main/target/stage/usr/bin/kdthin-ld ",
            "/tmp/tgt-k/release/kdthin-ld ",
            "mv ",
            "./tools/objtool/objtool ",
            "scripts/basic/fixdep ",
            "rm -f lib/.crc",
        ];
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("lib")).unwrap();
        for (name, script) in [
            ("612", include_str!("testdata/612-recipe-crc-ccitt.sh")),
            ("612-V1", include_str!("testdata/612-recipe-crc-ccitt-V1.sh")),
            ("61", include_str!("testdata/61-recipe-crc-ccitt.sh")),
            ("61-silent", include_str!("testdata/61-recipe-crc-ccitt-silent.sh")),
            ("mixed", "a 'b c' 2>/dev/null && x=1 kbprint_env\nb \"d\\\"e\" >>f; c\\ d <f"),
        ] {
            let mut script = script.to_string();
            for p in programs {
                script = script.replace(p, &format!("kbprint {p}"));
            }
            let script = script.replace("a 'b c'", "kbprint a 'b c'").replace("\nb ", "\nkbprint b ");
            let script = script.replace("; c\\ d", "; kbprint c\\ d");
            let ours: Vec<Vec<String>> = split_script(&script)
                .into_iter()
                .filter_map(|c| c.words.ok())
                .filter(|w| w[0] == "kbprint")
                .map(|w| w[1..].to_vec())
                .collect();
            assert!(ours.len() >= 3, "{name}: {ours:?}");
            let out = dir.path().join("out");
            let wrapped = format!(
                "kbprint() {{ printf '%s\\0' \"$@\" >&3; printf '\\1' >&3; }}; exec 3>'{}'; {script}",
                out.display()
            );
            let ran =
                std::process::Command::new("/bin/sh").arg("-c").arg(&wrapped).current_dir(dir.path()).output().unwrap();
            assert!(ran.status.success(), "{name}: {}", String::from_utf8_lossy(&ran.stderr));
            let printed = std::fs::read_to_string(&out).unwrap();
            let theirs: Vec<Vec<String>> = printed
                .split_terminator('\u{1}')
                .map(|c| c.split_terminator('\0').map(String::from).collect())
                .collect();
            assert_eq!(ours, theirs, "{name}");
        }
    }
}

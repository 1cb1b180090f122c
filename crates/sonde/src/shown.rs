//! Text a peer supplied, made safe to print on a terminal or in a log: a
//! server's output, a refusal's reason, a parser's complaint about a
//! peer's message. Control characters could move the cursor, recolour or
//! clear a terminal, or start a forged `sonde: ...` line in a log; a
//! bidirectional control makes a line read other than it is.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` is printed escaped: C0 and C1 controls, DEL, and the
/// bidirectional embedding, override and isolate controls; a newline and
/// a tab only when `lines` is false.
fn hidden(c: char, lines: bool) -> bool {
    match c {
        '\n' | '\t' => !lines,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => true,
        c => c.is_control(),
    }
}

/// `text` with every character that could drive a terminal or forge a
/// line written as an escape (`\u{1b}`, `\n`); borrowed when nothing
/// needed escaping. With `lines`, newlines and tabs stay as they are (a
/// server's multi-line output).
#[must_use]
pub fn escaped(text: &str, lines: bool) -> Cow<'_, str> {
    if !text.chars().any(|c| hidden(c, lines)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !hidden(c, lines) {
            out.push(c);
        } else if c == '\n' {
            out.push_str("\\n");
        } else if c == '\t' {
            out.push_str("\\t");
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::escaped;

    #[test]
    fn plain_text_is_left_alone() {
        let text = "the receiver refused a.txt: over --max-size (10 MiB) é ü 漢";
        assert!(matches!(
            escaped(text, false),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn controls_are_written_as_escapes() {
        assert_eq!(escaped("a\u{1b}[2Jb", false), "a\\u{1b}[2Jb");
        assert_eq!(escaped("one\nsonde: forged", false), "one\\nsonde: forged");
        assert_eq!(escaped("x\u{7f}\u{9b}y\r", false), "x\\u{7f}\\u{9b}y\\u{d}");
        assert_eq!(
            escaped("invoice\u{202e}fdp.exe", false),
            "invoice\\u{202e}fdp.exe"
        );
    }

    #[test]
    fn lines_keep_their_newlines_and_lose_the_rest() {
        assert_eq!(
            escaped("a\tb\nc\u{1b}]0;t\u{7}", true),
            "a\tb\nc\\u{1b}]0;t\\u{7}"
        );
    }
}

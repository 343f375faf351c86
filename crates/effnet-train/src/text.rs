//! Text from the user's files (class names from folder names or `classes.txt`) made safe to
//! print: terminal control characters are shown escaped, never sent raw.

use std::borrow::Cow;

/// `s` with every control character (ESC, BEL, BS, CR, LF, NUL, DEL, C1 controls) written as
/// `\u{…}` (`\n`, `\r`, `\t` as themselves escaped), so that a name cannot clear the screen, set
/// the window title or overwrite the line it is printed on. Other text is returned as is.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_control("golden retriever"), "golden retriever");
        assert_eq!(escape_control("x\u{1b}[2J\u{1b}]0;pwn\u{7}"), "x\\u{1b}[2J\\u{1b}]0;pwn\\u{7}");
        assert_eq!(escape_control("a\u{8}\r\n\0\t\u{7f}\u{9b}"), "a\\u{8}\\r\\n\\u{0}\\t\\u{7f}\\u{9b}");
        assert!(!escape_control("\u{1b}c\u{7}").chars().any(char::is_control));
    }
}

//! Free text from the outside world (a package manager's output, a probe's error) made fit to
//! travel: what a terminal would show, without control characters, within a byte budget.
//! The updater cleans where such text enters; the coordinator refuses what is not clean.

use std::borrow::Cow;

/// The most bytes of free text a report or a heartbeat's detail may carry.
pub const MAX_REPORT_TEXT: usize = 4096;

/// Whether the coordinator accepts `c` in free text: printable, or a newline or a tab.
pub fn allowed_char(c: char) -> bool {
    !c.is_control() || matches!(c, '\n' | '\t')
}

/// A command's output as a terminal shows it, made plain: a carriage return starts its line
/// over (a progress bar leaves its last state), then as `clean_text`. For raw output only:
/// in text that quotes output after a prefix, the prefix would be overwritten too.
pub fn terminal_text(raw: &str, max_bytes: usize) -> String {
    let shown: Vec<&str> = raw
        .split('\n')
        .map(|line| {
            line.rsplit('\r')
                .find(|part| !part.is_empty())
                .unwrap_or("")
        })
        .collect();
    clean_text(&shown.join("\n"), max_bytes).into_owned()
}

/// `raw` made plain: ANSI escape sequences are dropped and any other control character but a
/// newline or a tab becomes a space. Longer than `max_bytes`, the tail is kept (where
/// commands put their verdict) behind a leading `…`. Text that is clean already (the usual
/// case, on every heartbeat) is borrowed, not copied.
pub fn clean_text(raw: &str, max_bytes: usize) -> Cow<'_, str> {
    if raw.len() <= max_bytes && raw.chars().all(allowed_char) {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(tail(&plain(raw), max_bytes))
}

/// Drops ANSI escape sequences (ESC [ … final byte, or ESC and one character) and turns
/// other control characters into spaces.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, up to the final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if allowed_char(c) {
            out.push(c);
        } else {
            out.push(' ');
        }
    }
    out
}

fn tail(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    const MARK: &str = "…";
    if max_bytes < MARK.len() {
        return String::new();
    }
    let budget = max_bytes.saturating_sub(MARK.len());
    let mut start = text.len() - budget;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("{MARK}{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_progress_bar_leaves_its_last_state() {
        let dpkg = "(Reading database ... 5%\r(Reading database ... 100%\r(Reading database ... 4821 files.)\nSetting up demo (1.2.0) ...\n";
        assert_eq!(
            terminal_text(dpkg, 4096),
            "(Reading database ... 4821 files.)\nSetting up demo (1.2.0) ...\n"
        );
    }

    #[test]
    fn a_trailing_carriage_return_keeps_the_line() {
        assert_eq!(terminal_text("done\r\nnext", 100), "done\nnext");
    }

    #[test]
    fn quoted_output_keeps_its_prefix() {
        assert_eq!(
            clean_text("restart failed: 5%\r100%", 100),
            "restart failed: 5% 100%"
        );
    }

    #[test]
    fn colours_and_bells_go() {
        assert_eq!(
            clean_text("\u{1b}[1;31mE:\u{1b}[0m broken\u{7}", 100),
            "E: broken "
        );
    }

    #[test]
    fn the_tail_is_kept_within_the_budget() {
        let long = format!("{}verdict: é failed", "x".repeat(10_000));
        let cleaned = clean_text(&long, 64);
        assert!(cleaned.len() <= 64, "{}", cleaned.len());
        assert!(cleaned.starts_with('…') && cleaned.ends_with("verdict: é failed"));
    }

    proptest! {
        #[test]
        fn anything_comes_out_acceptable(raw in any::<String>(), max in 4usize..600) {
            for cleaned in [clean_text(&raw, max).into_owned(), terminal_text(&raw, max)] {
                prop_assert!(cleaned.len() <= max);
                prop_assert!(cleaned.chars().all(allowed_char));
            }
        }

        #[test]
        fn clean_text_is_left_alone(raw in "[a-zA-Z0-9 .:;/\n\t-]{0,300}") {
            prop_assert_eq!(clean_text(&raw, 4096), raw.clone());
            prop_assert_eq!(terminal_text(&raw, 4096), raw);
        }
    }
}

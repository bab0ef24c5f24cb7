//! The only code that writes to stdout and stderr, and the one colour rule.
//!
//! A reader that goes away (`droverctl agents list | head -1`) is success, not an error: it
//! got what it wanted. Rust ignores SIGPIPE, so such a write fails with `BrokenPipe`, which
//! `println!` would turn into a panic; these helpers turn it into `Ok`.

use std::{
    ffi::OsStr,
    io::{self, ErrorKind, IsTerminal, Write},
};

use crate::render;

#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Writes `text` and a newline to stdout.
pub fn print(text: &str) -> io::Result<()> {
    write_line(&mut io::stdout().lock(), text)
}

/// Writes `droverctl: MESSAGE` to stderr, with control characters removed from the message
/// (it often quotes the server).
pub fn error(message: &str) {
    let prefix = render::paint("droverctl:", colour(Stream::Stderr));
    let line = format!("{prefix} {}", render::clean(message));
    // Nothing better to do if stderr itself is gone.
    let _ = write_line(&mut io::stderr().lock(), &line);
}

fn write_line(out: &mut impl Write, text: &str) -> io::Result<()> {
    let written = out
        .write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Err(err) if err.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Whether to colour what goes to `stream`: only a terminal, and never with `NO_COLOR`.
pub fn colour(stream: Stream) -> bool {
    let tty = match stream {
        Stream::Stdout => io::stdout().is_terminal(),
        Stream::Stderr => io::stderr().is_terminal(),
    };
    colour_allowed(tty, std::env::var_os("NO_COLOR").as_deref())
}

/// The rule itself (no-color.org: `NO_COLOR` set to anything but the empty string).
fn colour_allowed(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour_allowed(true, None));
        assert!(colour_allowed(true, Some(OsStr::new(""))));
        assert!(!colour_allowed(true, Some(OsStr::new("1"))));
        assert!(!colour_allowed(false, None));
        assert!(!colour_allowed(false, Some(OsStr::new("1"))));
    }

    /// A writer whose reader has gone away.
    struct ClosedPipe;
    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_closed_pipe_is_success_and_other_errors_are_not() {
        assert!(write_line(&mut ClosedPipe, "row").is_ok());
        let mut full: &mut [u8] = &mut [0u8; 2];
        assert!(write_line(&mut full, "too long for the buffer").is_err());
    }
}

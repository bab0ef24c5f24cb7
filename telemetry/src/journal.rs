//! Log priorities for the systemd journal. A service's stderr is a stream into journald,
//! which files every line at the unit's `SyslogLevel=` (info) unless the line starts with
//! an sd-daemon priority prefix (`<3>`, `<4>`, …; `SyslogLevelPrefix=yes` is the default).
//! Without the prefixes `journalctl -p warning` shows none of Drover's warnings or errors.
//!
//! The prefixes are written only when stderr really is the journal: systemd sets
//! `JOURNAL_STREAM=DEV:INO` to the device and inode of the stream it connected, and a
//! child whose stderr was redirected (a pipe, a file) inherits the variable but not the
//! stream, so both numbers are compared with stderr's own (as sd_journal_stream_fd's
//! documentation asks). Terminals, files, pipes and containers get the lines unchanged.
//!
//! Why not tracing-journald: it speaks journald's native datagram protocol instead of
//! stderr, maps INFO to notice (5), and would drop the `--log-format` the operator chose;
//! a prefix keeps the same lines with the priority journald already understands.

use std::{
    io::{self, Write},
    os::{fd::AsFd, unix::fs::MetadataExt},
};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The sd-daemon prefix for `level` (sd-daemon.h: SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG).
pub fn priority_prefix(level: &Level) -> &'static [u8] {
    match *level {
        Level::ERROR => b"<3>",
        Level::WARN => b"<4>",
        Level::INFO => b"<6>",
        Level::DEBUG | Level::TRACE => b"<7>",
    }
}

/// Whether `journal_stream` (the value of `JOURNAL_STREAM`, `DEV:INO` in decimal) names
/// the file whose device and inode are `dev` and `ino`.
pub fn names_stream(journal_stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = journal_stream.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>().ok() == Some(dev) && i.parse::<u64>().ok() == Some(ino)
}

/// Whether this process's stderr is the journal stream systemd connected it to.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some(value) = value.to_str() else {
        return false;
    };
    // fstat on a duplicate of fd 2 (safe code; works for sockets, pipes and files).
    let Ok(fd) = io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(meta) => names_stream(value, meta.dev(), meta.ino()),
        Err(_) => false,
    }
}

/// A [`MakeWriter`] that, when on, starts every line of an event with its level's
/// sd-daemon prefix (every line: journald makes one entry of each, and a message with a
/// line break would otherwise give its later lines the default priority).
#[derive(Debug, Clone)]
pub struct JournalPriority<M> {
    inner: M,
    on: bool,
}

impl<M> JournalPriority<M> {
    /// Prefixes lines only when `on`; otherwise writes through unchanged.
    pub fn new(inner: M, on: bool) -> Self {
        Self { inner, on }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for JournalPriority<M> {
    type Writer = PrefixLines<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        PrefixLines {
            inner: self.inner.make_writer(),
            prefix: self.on.then_some(priority_prefix(&Level::INFO)),
            line_start: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        PrefixLines {
            inner: self.inner.make_writer_for(meta),
            prefix: self.on.then_some(priority_prefix(meta.level())),
            line_start: true,
        }
    }
}

/// One event's writer: the prefix before each line, the event in one write to the
/// stream (so lines of events on other threads never interleave with its lines).
#[derive(Debug)]
pub struct PrefixLines<W> {
    inner: W,
    prefix: Option<&'static [u8]>,
    line_start: bool,
}

impl<W: Write> Write for PrefixLines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(prefix) = self.prefix else {
            return self.inner.write(buf);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let mut out = Vec::with_capacity(buf.len() + 2 * prefix.len());
        for line in buf.split_inclusive(|&b| b == b'\n') {
            if self.line_start {
                out.extend_from_slice(prefix);
            }
            out.extend_from_slice(line);
            self.line_start = line.ends_with(b"\n");
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

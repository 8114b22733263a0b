//! The replication backlog: the last `repl-backlog-size` bytes of the effect stream, from which
//! a replica that lost its link resumes with `+CONTINUE` instead of a full sync.

use std::collections::VecDeque;

/// The tail of the effect stream. Positions are 0-based stream offsets: the backlog holds the
/// bytes at `[first, end)`. (Redis reports 1-based offsets: `repl_backlog_first_byte_offset`
/// is `first + 1`, and `PSYNC <id> <n>` asks for the stream from position `n - 1`.)
pub struct Backlog {
    buf: VecDeque<u8>,
    first: u64,
    size: usize,
}

impl Backlog {
    /// An empty backlog of `size` bytes whose next byte is stream position `end`.
    pub fn new(size: usize, end: u64) -> Backlog {
        Backlog {
            buf: VecDeque::new(),
            first: end,
            size: size.max(1),
        }
    }

    /// Appends the stream bytes that start at position `start`. A gap (the stream was
    /// replaced by a full sync from a primary) empties the backlog first.
    pub fn append(&mut self, start: u64, bytes: &[u8]) {
        if start != self.end() {
            self.reset(start);
        }
        if bytes.len() >= self.size {
            self.buf.clear();
            self.buf.extend(&bytes[bytes.len() - self.size..]);
            self.first = start + (bytes.len() - self.size) as u64;
            return;
        }
        let over = (self.buf.len() + bytes.len()).saturating_sub(self.size);
        if over > 0 {
            self.buf.drain(..over);
            self.first += over as u64;
        }
        self.buf.extend(bytes);
    }

    /// Forgets the history; the next byte is position `end`.
    pub fn reset(&mut self, end: u64) {
        self.buf.clear();
        self.first = end;
    }

    /// Changes the size, dropping the oldest bytes if it shrank.
    pub fn resize(&mut self, size: usize) {
        self.size = size.max(1);
        let over = self.buf.len().saturating_sub(self.size);
        if over > 0 {
            self.buf.drain(..over);
            self.first += over as u64;
        }
        self.buf.shrink_to(self.size);
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Position of the first byte held.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Position after the last byte held.
    pub fn end(&self) -> u64 {
        self.first + self.buf.len() as u64
    }

    /// Bytes held.
    pub fn histlen(&self) -> u64 {
        self.buf.len() as u64
    }

    /// True if a replica that has the stream up to `from` can continue from here.
    pub fn covers(&self, from: u64) -> bool {
        from >= self.first && from <= self.end()
    }

    /// Appends the stream from position `from` to the end to `out`; false if the backlog does
    /// not hold it.
    pub fn copy_from(&self, from: u64, out: &mut Vec<u8>) -> bool {
        if !self.covers(from) {
            return false;
        }
        let skip = (from - self.first) as usize;
        let (a, b) = self.buf.as_slices();
        if skip < a.len() {
            out.extend_from_slice(&a[skip..]);
            out.extend_from_slice(b);
        } else {
            out.extend_from_slice(&b[skip - a.len()..]);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes_and_continues_from_any_held_position() {
        let mut b = Backlog::new(10, 100);
        b.append(100, b"abcdef");
        assert_eq!((b.first(), b.end()), (100, 106));
        b.append(106, b"ghijkl");
        assert_eq!((b.first(), b.end(), b.histlen()), (102, 112, 10));
        let mut out = Vec::new();
        assert!(b.copy_from(105, &mut out));
        assert_eq!(out, b"fghijkl");
        out.clear();
        assert!(b.copy_from(112, &mut out), "a replica that is up to date");
        assert!(out.is_empty());
        assert!(!b.copy_from(101, &mut out), "before the first byte held");
        assert!(!b.copy_from(113, &mut out), "past the end");
        b.append(112, b"0123456789ABC");
        assert_eq!((b.first(), b.end()), (115, 125));
        out.clear();
        assert!(b.copy_from(115, &mut out));
        assert_eq!(out, b"3456789ABC");
        // A gap restarts the history.
        b.append(500, b"xy");
        assert_eq!((b.first(), b.end()), (500, 502));
        b.resize(1);
        assert_eq!((b.first(), b.end()), (501, 502));
    }
}

//! RESP reply framing, for the proxy: where one reply (RESP2 or RESP3) ends in a buffer, found
//! without decoding it and resumable across reads, and small readers of the replies the proxy
//! merges (integers, arrays, bulk strings).

use memchr::memchr;

/// The longest header line accepted (a type byte, a length and `\r\n`, or a simple string).
const MAX_LINE: usize = 64 * 1024 * 1024;
/// The deepest nesting of aggregates accepted.
const MAX_DEPTH: usize = 1024;

/// A reply that is not valid RESP: the connection it came from cannot be trusted any more.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("protocol error in a reply: {0}")]
pub struct FrameError(pub &'static str);

/// Finds the end of one reply at the start of a buffer. Between calls it remembers how far it
/// got, so a large reply arriving in many reads is scanned once.
#[derive(Debug, Default)]
pub struct FrameScanner {
    /// Offset, from the reply's start, of the next element header to read.
    pos: usize,
    /// Elements still to come in each open aggregate, innermost last.
    open: Vec<u64>,
}

impl FrameScanner {
    pub fn new() -> Self {
        FrameScanner::default()
    }

    /// Scans `buf`, which starts at the first byte of a reply (the same start on every call
    /// until the reply is complete). `Ok(Some(n))`: the reply is the first `n` bytes, and the
    /// scanner is ready for the next one. `Ok(None)`: more bytes are needed.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        loop {
            let pos = self.pos;
            if pos >= buf.len() {
                return Ok(None);
            }
            let Some(cr) = memchr(b'\r', &buf[pos..]).map(|i| pos + i) else {
                if buf.len() - pos > MAX_LINE {
                    return Err(FrameError("header line too long"));
                }
                return Ok(None);
            };
            if cr + 1 >= buf.len() {
                return Ok(None);
            }
            if buf[cr + 1] != b'\n' {
                return Err(FrameError("line not ended by CRLF"));
            }
            let next = cr + 2;
            let end = match buf[pos] {
                b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => next,
                b'$' | b'=' | b'!' => match length(&buf[pos + 1..cr])? {
                    None => next,
                    Some(n) => {
                        let end = next
                            .checked_add(n as usize)
                            .and_then(|e| e.checked_add(2))
                            .ok_or(FrameError("bulk length"))?;
                        if end > buf.len() {
                            return Ok(None);
                        }
                        end
                    }
                },
                kind @ (b'*' | b'%' | b'~' | b'>' | b'|') => match length(&buf[pos + 1..cr])? {
                    None | Some(0) if kind != b'|' => next,
                    None => return Err(FrameError("null attribute")),
                    Some(n) => {
                        let count = match kind {
                            b'%' => n * 2,
                            // An attribute's pairs, then the value it annotates.
                            b'|' => n * 2 + 1,
                            _ => n,
                        };
                        if self.open.len() >= MAX_DEPTH {
                            return Err(FrameError("nesting too deep"));
                        }
                        self.open.push(count);
                        self.pos = next;
                        continue;
                    }
                },
                _ => return Err(FrameError("unknown type byte")),
            };
            self.pos = end;
            // One element is complete: close every aggregate it completes.
            loop {
                match self.open.last_mut() {
                    None => {
                        self.pos = 0;
                        return Ok(Some(end));
                    }
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
    }
}

/// A length field: `None` for -1 (null), an error for anything else invalid.
fn length(field: &[u8]) -> Result<Option<u64>, FrameError> {
    match crate::num::parse_i64(field) {
        Some(-1) => Ok(None),
        Some(n) if n >= 0 => Ok(Some(n as u64)),
        _ => Err(FrameError("invalid length")),
    }
}

/// The length of the complete reply at the start of `buf`, if there is one.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    FrameScanner::new().scan(buf).ok().flatten()
}

/// The integer of a `:n` reply.
pub fn integer(frame: &[u8]) -> Option<i64> {
    let body = frame.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    crate::num::parse_i64(body)
}

/// True for an error reply (`-...` or a RESP3 blob error).
pub fn is_error(frame: &[u8]) -> bool {
    matches!(frame.first(), Some(b'-' | b'!'))
}

/// True for a null reply (`$-1`, `*-1` or RESP3's `_`).
pub fn is_null(frame: &[u8]) -> bool {
    frame == b"$-1\r\n" || frame == b"*-1\r\n" || frame == b"_\r\n"
}

/// The text of a simple string, or the payload of a bulk or verbatim string (without its
/// `txt:` prefix).
pub fn string(frame: &[u8]) -> Option<&[u8]> {
    match frame.first()? {
        b'+' => frame[1..].strip_suffix(b"\r\n"),
        b'$' | b'=' => {
            let cr = memchr(b'\r', frame)?;
            let n = usize::try_from(crate::num::parse_i64(&frame[1..cr])?).ok()?;
            let body = frame.get(cr + 2..cr + 2 + n)?;
            if frame[0] == b'=' {
                body.get(4..)
            } else {
                Some(body)
            }
        }
        _ => None,
    }
}

/// The elements of an array, set, push or map reply (a map's keys and values alternate), each
/// as its own complete reply. `None` for any other reply.
pub fn elements(frame: &[u8]) -> Option<Vec<&[u8]>> {
    if !matches!(frame.first()?, b'*' | b'~' | b'%' | b'>') {
        return None;
    }
    let cr = memchr(b'\r', frame)?;
    let mut n = usize::try_from(crate::num::parse_i64(&frame[1..cr])?).ok()?;
    if frame[0] == b'%' {
        n *= 2;
    }
    let mut out = Vec::with_capacity(n.min(1024));
    let mut pos = cr + 2;
    for _ in 0..n {
        let len = frame_len(&frame[pos..])?;
        out.push(&frame[pos..pos + len]);
        pos += len;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(reply: &[u8]) -> Option<usize> {
        FrameScanner::new().scan(reply).unwrap()
    }

    #[test]
    fn finds_the_end_of_every_kind_of_reply() {
        for reply in [
            &b"+OK\r\n"[..],
            b"-ERR x\r\n",
            b":42\r\n",
            b"$3\r\nfoo\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
            b"%1\r\n+k\r\n*2\r\n:1\r\n_\r\n",
            b"~2\r\n#t\r\n,1.5\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"|1\r\n+key\r\n+val\r\n:5\r\n",
            b">2\r\n+a\r\n+b\r\n",
            b"(1234567890123456789012\r\n",
            b"!3\r\nerr\r\n",
        ] {
            assert_eq!(whole(reply), Some(reply.len()), "{}", reply.escape_ascii());
            let mut tail = reply.to_vec();
            tail.extend_from_slice(b"+next\r\n");
            assert_eq!(whole(&tail), Some(reply.len()));
            for cut in 0..reply.len() {
                assert_eq!(
                    whole(&reply[..cut]),
                    None,
                    "{}",
                    reply[..cut].escape_ascii()
                );
            }
        }
    }

    #[test]
    fn resumes_across_reads() {
        let reply = b"*3\r\n$5\r\nhello\r\n*2\r\n:1\r\n:2\r\n$-1\r\n";
        let mut s = FrameScanner::new();
        for cut in 1..reply.len() {
            assert_eq!(s.scan(&reply[..cut]).unwrap(), None);
        }
        assert_eq!(s.scan(reply).unwrap(), Some(reply.len()));
        assert_eq!(s.scan(b":1\r\n").unwrap(), Some(4));
    }

    #[test]
    fn refuses_what_is_not_resp() {
        for bad in [&b"?x\r\n"[..], b"$-2\r\n", b"*x\r\n", b"+OK\rx", b"|-1\r\n"] {
            assert!(
                FrameScanner::new().scan(bad).is_err(),
                "{}",
                bad.escape_ascii()
            );
        }
    }

    #[test]
    fn reads_merged_replies() {
        assert_eq!(integer(b":-7\r\n"), Some(-7));
        assert_eq!(integer(b"+7\r\n"), None);
        assert_eq!(string(b"$3\r\nfoo\r\n"), Some(&b"foo"[..]));
        assert_eq!(string(b"+OK\r\n"), Some(&b"OK"[..]));
        assert_eq!(string(b"=7\r\ntxt:abc\r\n"), Some(&b"abc"[..]));
        assert!(is_null(b"_\r\n") && is_error(b"-ERR\r\n"));
        let e = elements(b"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:1\r\n").unwrap();
        assert_eq!(e, [&b"$1\r\na\r\n"[..], b"$-1\r\n", b"*1\r\n:1\r\n"]);
        assert_eq!(elements(b"%1\r\n+a\r\n:1\r\n").unwrap().len(), 2);
        assert_eq!(elements(b":1\r\n"), None);
    }
}

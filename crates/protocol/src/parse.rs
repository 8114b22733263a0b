//! The RESP request parser: arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline
//! commands (`PING\r\n`, as `nc`, `telnet` and redis-benchmark's `PING_INLINE` send them).
//!
//! The parser is incremental: [`RequestParser::parse`] takes the unconsumed bytes of the read
//! buffer, starting at the current request, and either returns the length of one complete
//! request (`Ok(Some(n))`), or `Ok(None)` when it needs more bytes. Arguments are spans of that
//! buffer, so nothing is copied; only inline arguments with quotes or escapes are unescaped into
//! the parser's own scratch buffer. Progress through a partial request is kept, so a request
//! arriving in many reads is scanned once, and [`RequestParser::wanted`] tells the caller how large
//! a bulk argument it is waiting for.
//!
//! Limits and error texts follow Redis 7.0 (`processMultibulkBuffer` and `processInlineBuffer` in
//! networking.c), including the tighter limits before authentication.

use memchr::memchr;

/// Protocol limits, configurable like Redis's `proto-max-bulk-len` and friends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk argument (`proto-max-bulk-len`, 512 MB).
    pub max_bulk_len: usize,
    /// Longest inline request or length line without a newline (`PROTO_INLINE_MAX_SIZE`, 64 KB).
    pub max_inline_len: usize,
    /// Largest argument count of one request (Redis: `INT_MAX`).
    pub max_multibulk_len: usize,
    /// Largest argument count before the connection has authenticated.
    pub unauth_max_multibulk_len: usize,
    /// Largest bulk argument before the connection has authenticated.
    pub unauth_max_bulk_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_multibulk_len: i32::MAX as usize,
            unauth_max_multibulk_len: 10,
            unauth_max_bulk_len: 16384,
        }
    }
}

/// A malformed request. Redis replies with [`ParseError::message`] and closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    #[error("Protocol error: expected '$', got '{}'", *.0 as char)]
    ExpectedDollar(u8),
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
}

/// The arguments of one parsed request: spans of a buffer.
#[derive(Clone, Copy)]
pub struct Args<'a> {
    buf: &'a [u8],
    spans: &'a [(u32, u32)],
}

impl<'a> Args<'a> {
    /// Number of arguments, the command name included.
    #[inline]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True for a request without arguments (an empty inline line or `*0`).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Argument `i`; panics past the end like slice indexing (the command table's arity check
    /// runs before any handler reads arguments).
    #[inline]
    pub fn get(&self, i: usize) -> &'a [u8] {
        let (start, end) = self.spans[i];
        &self.buf[start as usize..end as usize]
    }

    /// Argument `i`, or `None` past the end.
    #[inline]
    pub fn try_get(&self, i: usize) -> Option<&'a [u8]> {
        (i < self.len()).then(|| self.get(i))
    }

    /// The arguments from `from` on.
    pub fn iter_from(&self, from: usize) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let buf = self.buf;
        self.spans[from.min(self.spans.len())..]
            .iter()
            .map(move |&(s, e)| &buf[s as usize..e as usize])
    }

    /// All arguments.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        self.iter_from(0)
    }

    /// The arguments from `from` on, as a request of their own (`ACL DRYRUN user cmd ...`).
    pub fn skip(&self, from: usize) -> Args<'a> {
        Args {
            buf: self.buf,
            spans: &self.spans[from.min(self.spans.len())..],
        }
    }

    /// Arguments built from owned byte strings, for tests and for commands that a server issues
    /// itself. `storage` must outlive the returned value.
    pub fn from_parts(buf: &'a [u8], spans: &'a [(u32, u32)]) -> Self {
        Args { buf, spans }
    }
}

impl std::fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|a| String::from_utf8_lossy(a).into_owned()))
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a request.
    Start,
    /// Inside an array request: `remaining` bulks to go; `bulk_len` is the length of the bulk
    /// whose header has been read, if any.
    Multibulk {
        remaining: usize,
        bulk_len: Option<usize>,
    },
}

/// The incremental request parser of one connection.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    state: State,
    /// Offset in the request where parsing resumes.
    pos: usize,
    spans: Vec<(u32, u32)>,
    /// True when the spans of the last request refer to `inline_buf`.
    inline: bool,
    inline_buf: Vec<u8>,
}

impl RequestParser {
    /// A parser with the given limits.
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            state: State::Start,
            pos: 0,
            spans: Vec::with_capacity(8),
            inline: false,
            inline_buf: Vec::new(),
        }
    }

    /// Replaces the limits (CONFIG SET); they apply from the next request.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Parses one request from `buf`, which starts at the first byte of the request: the same
    /// request start must be passed again after `Ok(None)`, with more bytes appended.
    ///
    /// Returns `Ok(Some(n))` when a complete request of `n` bytes was parsed (its arguments are
    /// then in [`RequestParser::args`], possibly none), `Ok(None)` when more bytes are needed.
    pub fn parse(&mut self, buf: &[u8], authenticated: bool) -> Result<Option<usize>, ParseError> {
        if self.state == State::Start {
            if self.pos == 0 {
                self.spans.clear();
            }
            match buf.first() {
                None => return Ok(None),
                Some(b'*') => {}
                Some(_) => return self.parse_inline(buf),
            }
            let Some(line_end) = find_cr(buf, 0) else {
                if buf.len() > self.limits.max_inline_len {
                    return Err(ParseError::TooBigMultibulkCount);
                }
                return Ok(None);
            };
            // Redis requires the "\n" after the "\r" to be in the buffer too.
            if line_end + 2 > buf.len() {
                return Ok(None);
            }
            let count = parse_i64(&buf[1..line_end]).ok_or(ParseError::InvalidMultibulkLength)?;
            if count > self.limits.max_multibulk_len as i64 {
                return Err(ParseError::InvalidMultibulkLength);
            }
            if count > self.limits.unauth_max_multibulk_len as i64 && !authenticated {
                return Err(ParseError::UnauthenticatedMultibulkLength);
            }
            self.inline = false;
            let header = line_end + 2;
            if count <= 0 {
                // Redis silently skips empty and negative multibulk requests.
                self.spans.clear();
                return Ok(Some(header));
            }
            // Cap the reservation: the count is the client's word, the bytes are not here yet.
            self.spans.reserve((count as usize).min(1024));
            self.state = State::Multibulk {
                remaining: count as usize,
                bulk_len: None,
            };
            self.pos = header;
        }
        self.parse_bulks(buf, authenticated)
    }

    fn parse_bulks(
        &mut self,
        buf: &[u8],
        authenticated: bool,
    ) -> Result<Option<usize>, ParseError> {
        let State::Multibulk {
            mut remaining,
            mut bulk_len,
        } = self.state
        else {
            unreachable!("parse_bulks runs inside a multibulk request");
        };
        let mut pos = self.pos;
        let result = loop {
            if remaining == 0 {
                break Ok(Some(pos));
            }
            let len = match bulk_len {
                Some(len) => len,
                None => {
                    let Some(line_end) = find_cr(buf, pos) else {
                        if buf.len() - pos > self.limits.max_inline_len {
                            break Err(ParseError::TooBigBulkCount);
                        }
                        break Ok(None);
                    };
                    if line_end + 2 > buf.len() {
                        break Ok(None);
                    }
                    if buf[pos] != b'$' {
                        break Err(ParseError::ExpectedDollar(buf[pos]));
                    }
                    let len = match parse_i64(&buf[pos + 1..line_end]) {
                        Some(n) if n >= 0 && n as u64 <= self.limits.max_bulk_len as u64 => {
                            n as usize
                        }
                        _ => break Err(ParseError::InvalidBulkLength),
                    };
                    if len > self.limits.unauth_max_bulk_len && !authenticated {
                        break Err(ParseError::UnauthenticatedBulkLength);
                    }
                    pos = line_end + 2;
                    bulk_len = Some(len);
                    len
                }
            };
            // Like Redis, the two bytes after the bulk are taken as its "\r\n" unchecked.
            if buf.len() - pos < len + 2 {
                break Ok(None);
            }
            self.spans.push((pos as u32, (pos + len) as u32));
            pos += len + 2;
            remaining -= 1;
            bulk_len = None;
        };
        match result {
            Ok(Some(_)) | Err(_) => {
                self.state = State::Start;
                self.pos = 0;
            }
            Ok(None) => {
                self.state = State::Multibulk {
                    remaining,
                    bulk_len,
                };
                self.pos = pos;
            }
        }
        result
    }

    fn parse_inline(&mut self, buf: &[u8]) -> Result<Option<usize>, ParseError> {
        let Some(newline) = memchr(b'\n', buf) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ParseError::TooBigInline);
            }
            return Ok(None);
        };
        let line_end = if newline > 0 && buf[newline - 1] == b'\r' {
            newline - 1
        } else {
            newline
        };
        self.inline = true;
        self.spans.clear();
        self.inline_buf.clear();
        split_args(&buf[..line_end], &mut self.inline_buf, &mut self.spans)?;
        Ok(Some(newline + 1))
    }

    /// The arguments of the request that the last `Ok(Some(_))` completed. `buf` must be the
    /// buffer that was passed to that call.
    #[inline]
    pub fn args<'a>(&'a self, buf: &'a [u8]) -> Args<'a> {
        let buf = if self.inline {
            &self.inline_buf[..]
        } else {
            buf
        };
        Args {
            buf,
            spans: &self.spans,
        }
    }

    /// While inside a request, the number of bytes (from the request start) needed before the
    /// current bulk argument is complete; lets the caller size its next read.
    pub fn wanted(&self) -> Option<usize> {
        match self.state {
            State::Multibulk {
                bulk_len: Some(len),
                ..
            } => Some(self.pos + len + 2),
            _ => None,
        }
    }

    /// True while a request has been started but not completed.
    pub fn in_request(&self) -> bool {
        self.state != State::Start
    }
}

#[inline]
fn find_cr(buf: &[u8], from: usize) -> Option<usize> {
    memchr(b'\r', &buf[from..]).map(|i| from + i)
}

/// Redis's `string2ll`: an optional `-`, digits, no leading zeros, no spaces, within `i64`.
#[inline]
fn parse_i64(s: &[u8]) -> Option<i64> {
    crate::num::parse_i64(s)
}

/// Splits a line into arguments as Redis's `sdssplitargs` does (see `split_args`); `None` for
/// unbalanced quotes.
pub fn split_line(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut spans = Vec::new();
    split_args(line, &mut out, &mut spans).ok()?;
    Some(
        spans
            .iter()
            .map(|&(a, b)| out[a as usize..b as usize].to_vec())
            .collect(),
    )
}

/// Splits an inline request into arguments like Redis's `sdssplitargs`: spaces separate
/// arguments, `"..."` takes `\n \r \t \b \a \\ \"` and `\xHH` escapes, `'...'` takes `\'`, and a
/// closing quote must be followed by a space or the end of the line.
fn split_args(
    line: &[u8],
    out: &mut Vec<u8>,
    spans: &mut Vec<(u32, u32)>,
) -> Result<(), ParseError> {
    // sdssplitargs works on a C string: a NUL byte ends the line.
    let line = memchr(0, line).map_or(line, |nul| &line[..nul]);
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            return Ok(());
        }
        let start = out.len();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= n {
                    return Err(ParseError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && line[i + 2].is_ascii_hexdigit()
                    && line[i + 3].is_ascii_hexdigit()
                {
                    out.push(hex_val(line[i + 2]) * 16 + hex_val(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    out.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    close_quote(line, i)?;
                    i += 1;
                    break;
                } else {
                    out.push(c);
                }
            } else if in_sq {
                if i >= n {
                    return Err(ParseError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    out.push(b'\'');
                } else if c == b'\'' {
                    close_quote(line, i)?;
                    i += 1;
                    break;
                } else {
                    out.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' => break,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => out.push(c),
                }
            }
            i += 1;
        }
        spans.push((start as u32, out.len() as u32));
    }
}

/// A closing quote at `i` must be followed by a space or the end of the line.
fn close_quote(line: &[u8], i: usize) -> Result<(), ParseError> {
    match line.get(i + 1) {
        Some(c) if !c.is_ascii_whitespace() => Err(ParseError::UnbalancedQuotes),
        _ => Ok(()),
    }
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ParseError> {
        let mut p = RequestParser::new(Limits::default());
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(n) = p.parse(&input[at..], true)? {
            let args = p.args(&input[at..]);
            if !args.is_empty() {
                out.push(args.iter().map(<[u8]>::to_vec).collect());
            }
            at += n;
        }
        Ok(out)
    }

    fn v(parts: &[&str]) -> Vec<Vec<u8>> {
        parts.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn parses_arrays_and_pipelines() {
        let got = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(got, vec![v(&["GET", "k"]), v(&["PING"])]);
    }

    #[test]
    fn parses_inline_commands() {
        let got = parse_all(b"PING\r\nset  k \"a\\x41\\n\" 'it\\'s'\nECHO \"\"\r\n").unwrap();
        assert_eq!(
            got,
            vec![
                v(&["PING"]),
                v(&["set", "k", "aA\n", "it's"]),
                v(&["ECHO", ""])
            ]
        );
    }

    #[test]
    fn skips_empty_requests() {
        assert_eq!(
            parse_all(b"\r\n\n*0\r\n*-10\r\nPING\r\n").unwrap(),
            vec![v(&["PING"])]
        );
    }

    #[test]
    fn reports_redis_errors() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"*3000000000\r\n",
                "Protocol error: invalid multibulk length",
            ),
            (b"*abc\r\n", "Protocol error: invalid multibulk length"),
            (b"*1\r\nfoo\r\n", "Protocol error: expected '$', got 'f'"),
            (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
            (
                b"*1\r\n$2000000000\r\n",
                "Protocol error: invalid bulk length",
            ),
            (b"*1\r\n$01\r\na\r\n", "Protocol error: invalid bulk length"),
            (
                b"SET k \"v\r\n",
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"SET k \"v\"x\r\n",
                "Protocol error: unbalanced quotes in request",
            ),
        ];
        for (input, msg) in cases {
            let err = parse_all(input).unwrap_err();
            assert_eq!(
                err.to_string(),
                *msg,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn enforces_line_limits() {
        let mut p = RequestParser::new(Limits::default());
        let long = vec![b'a'; 64 * 1024 + 1];
        assert_eq!(p.parse(&long, true), Err(ParseError::TooBigInline));
        let mut mb = b"*".to_vec();
        mb.extend(std::iter::repeat_n(b'1', 64 * 1024 + 1));
        assert_eq!(p.parse(&mb, true), Err(ParseError::TooBigMultibulkCount));
        let mut bulk = b"*1\r\n$".to_vec();
        bulk.extend(std::iter::repeat_n(b'1', 64 * 1024 + 1));
        assert_eq!(p.parse(&bulk, true), Err(ParseError::TooBigBulkCount));
    }

    #[test]
    fn unauthenticated_limits_are_tighter() {
        let mut p = RequestParser::new(Limits::default());
        assert_eq!(
            p.parse(b"*11\r\n", false),
            Err(ParseError::UnauthenticatedMultibulkLength)
        );
        assert_eq!(
            p.parse(b"*1\r\n$16385\r\n", false),
            Err(ParseError::UnauthenticatedBulkLength)
        );
        assert_eq!(p.parse(b"*11\r\n", true), Ok(None));
    }

    #[test]
    fn every_split_point_gives_the_same_requests() {
        let input: &[u8] =
            b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$5\r\na\r\nb\x00\r\nPING\r\n*1\r\n$4\r\nPING\r\n";
        let whole = parse_all(input).unwrap();
        assert_eq!(whole.len(), 3);
        for split in 0..=input.len() {
            let mut p = RequestParser::new(Limits::default());
            let mut buf = input[..split].to_vec();
            let mut got = Vec::new();
            let mut fed = split;
            loop {
                match p.parse(&buf, true).unwrap() {
                    Some(n) => {
                        let args = p.args(&buf);
                        got.push(args.iter().map(<[u8]>::to_vec).collect::<Vec<_>>());
                        buf.drain(..n);
                    }
                    None if fed < input.len() => {
                        buf.extend_from_slice(&input[fed..]);
                        fed = input.len();
                    }
                    None => break,
                }
            }
            assert_eq!(got, whole, "split at {split}");
        }
    }

    #[test]
    fn reports_the_size_of_a_pending_bulk() {
        let mut p = RequestParser::new(Limits::default());
        assert_eq!(p.parse(b"*1\r\n$100\r\nab", true), Ok(None));
        assert_eq!(p.wanted(), Some(10 + 100 + 2));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = parse_all(&input);
        }

        #[test]
        fn encoded_arrays_round_trip(args in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 1..8)) {
            let mut wire = format!("*{}\r\n", args.len()).into_bytes();
            for a in &args {
                wire.extend(format!("${}\r\n", a.len()).bytes());
                wire.extend(a);
                wire.extend(b"\r\n");
            }
            proptest::prop_assert_eq!(parse_all(&wire).unwrap(), vec![args]);
        }
    }
}

//! The RESP2/RESP3 reply encoder. Replies are written straight into the connection's output
//! buffer; each method picks the RESP3 type or its RESP2 downgrade, as Redis's `addReply*` do.

use crate::num;

/// Writes replies into `out` for a connection speaking RESP2 or RESP3.
pub struct Reply<'a> {
    out: &'a mut Vec<u8>,
    resp3: bool,
}

impl<'a> Reply<'a> {
    /// An encoder appending to `out`.
    #[inline]
    pub fn new(out: &'a mut Vec<u8>, resp3: bool) -> Self {
        Reply { out, resp3 }
    }

    /// Bytes already encoded (a value in another client's protocol).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// True when the connection speaks RESP3.
    #[inline]
    pub fn resp3(&self) -> bool {
        self.resp3
    }

    /// The raw output buffer, for callers that write pre-encoded bytes.
    #[inline]
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        self.out
    }

    #[inline]
    fn header(&mut self, prefix: u8, n: i64) {
        self.out.push(prefix);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// `+OK`.
    #[inline]
    pub fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }

    /// A simple string; `\r` and `\n` become spaces so the reply stays one line.
    pub fn simple(&mut self, s: &str) {
        self.out.push(b'+');
        self.line(s.as_bytes());
    }

    /// An error reply; `msg` carries its code (`ERR ...`, `WRONGTYPE ...`), without the `-`.
    pub fn error(&mut self, msg: &str) {
        self.out.push(b'-');
        self.line(msg.as_bytes());
    }

    /// An error reply of arbitrary bytes (a script's error text); `msg` carries its code.
    pub fn error_bytes(&mut self, msg: &[u8]) {
        self.out.push(b'-');
        self.line(msg);
    }

    /// A simple string of arbitrary bytes; `\r` and `\n` become spaces.
    pub fn simple_bytes(&mut self, s: &[u8]) {
        self.out.push(b'+');
        self.line(s);
    }

    fn line(&mut self, s: &[u8]) {
        let start = self.out.len();
        self.out.extend_from_slice(s);
        for b in &mut self.out[start..] {
            if *b == b'\r' || *b == b'\n' {
                *b = b' ';
            }
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// An integer.
    #[inline]
    pub fn int(&mut self, n: i64) {
        match n {
            0 => self.out.extend_from_slice(b":0\r\n"),
            1 => self.out.extend_from_slice(b":1\r\n"),
            _ => self.header(b':', n),
        }
    }

    /// A bulk string.
    #[inline]
    pub fn bulk(&mut self, s: &[u8]) {
        self.header(b'$', s.len() as i64);
        self.out.extend_from_slice(s);
        self.out.extend_from_slice(b"\r\n");
    }

    /// A command as a client sends it (an array of `n` bulk strings): the effect stream, and
    /// what a replica sends its primary.
    #[inline]
    pub fn command<'b>(&mut self, n: usize, args: impl IntoIterator<Item = &'b [u8]>) {
        self.header(b'*', n as i64);
        for a in args {
            self.bulk(a);
        }
    }

    /// A bulk string holding an integer's decimal form.
    pub fn bulk_int(&mut self, n: i64) {
        let mut buf = itoa::Buffer::new();
        self.bulk(buf.format(n).as_bytes());
    }

    /// A bulk string, or the null bulk string for `None`.
    #[inline]
    pub fn bulk_opt(&mut self, s: Option<&[u8]>) {
        match s {
            Some(s) => self.bulk(s),
            None => self.null(),
        }
    }

    /// The null reply: `$-1` in RESP2, `_` in RESP3.
    #[inline]
    pub fn null(&mut self) {
        self.out
            .extend_from_slice(if self.resp3 { b"_\r\n" } else { b"$-1\r\n" });
    }

    /// The null array: `*-1` in RESP2, `_` in RESP3.
    pub fn null_array(&mut self) {
        self.out
            .extend_from_slice(if self.resp3 { b"_\r\n" } else { b"*-1\r\n" });
    }

    /// An array header of `n` elements.
    #[inline]
    pub fn array(&mut self, n: usize) {
        self.header(b'*', n as i64);
    }

    /// A map header of `n` pairs (RESP2: an array of `2n` elements).
    pub fn map(&mut self, n: usize) {
        if self.resp3 {
            self.header(b'%', n as i64)
        } else {
            self.header(b'*', 2 * n as i64)
        }
    }

    /// A set header (RESP2: an array).
    pub fn set(&mut self, n: usize) {
        self.header(if self.resp3 { b'~' } else { b'*' }, n as i64);
    }

    /// A push header (RESP2: an array), for pub/sub messages and invalidations.
    pub fn push(&mut self, n: usize) {
        self.header(if self.resp3 { b'>' } else { b'*' }, n as i64);
    }

    /// An attribute header (RESP3 only; nothing in RESP2).
    pub fn attribute(&mut self, n: usize) {
        if self.resp3 {
            self.header(b'|', n as i64);
        }
    }

    /// A double (RESP2: a bulk string formatted `%.17g`).
    pub fn double(&mut self, v: f64) {
        let mut text = Vec::with_capacity(24);
        num::write_g17(&mut text, v);
        self.double_text(&text);
    }

    /// A double already formatted (RESP2: a bulk string of that text).
    pub fn double_text(&mut self, text: &[u8]) {
        if self.resp3 {
            self.out.push(b',');
            self.out.extend_from_slice(text);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.bulk(text);
        }
    }

    /// A boolean (RESP2: the integer 1 or 0).
    pub fn boolean(&mut self, b: bool) {
        if self.resp3 {
            self.out
                .extend_from_slice(if b { b"#t\r\n" } else { b"#f\r\n" });
        } else {
            self.int(i64::from(b));
        }
    }

    /// A big number given as decimal digits (RESP2: a bulk string).
    pub fn big_number(&mut self, digits: &str) {
        if self.resp3 {
            self.out.push(b'(');
            self.out.extend_from_slice(digits.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.bulk(digits.as_bytes());
        }
    }

    /// A verbatim string with a three-letter format such as `txt` (RESP2: a bulk string).
    pub fn verbatim(&mut self, format: &str, text: &[u8]) {
        if self.resp3 {
            self.header(b'=', (text.len() + 4) as i64);
            self.out.extend_from_slice(format.as_bytes());
            self.out.push(b':');
            self.out.extend_from_slice(text);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.bulk(text);
        }
    }

    /// HELLO's reply: the server's description for client `id` in `role`.
    pub fn hello(&mut self, id: i64, role: &[u8]) {
        self.map(7);
        self.bulk(b"server");
        self.bulk(b"redis");
        self.bulk(b"version");
        self.bulk(crate::REDIS_VERSION.as_bytes());
        self.bulk(b"proto");
        self.int(if self.resp3() { 3 } else { 2 });
        self.bulk(b"id");
        self.int(id);
        self.bulk(b"mode");
        self.bulk(b"standalone");
        self.bulk(b"role");
        self.bulk(role);
        self.bulk(b"modules");
        self.array(0);
    }

    /// A simple string, or a bulk string when it must carry bytes a status line cannot.
    pub fn status_or_bulk(&mut self, s: &[u8]) {
        if s.iter().any(|&b| b == b'\r' || b == b'\n') {
            self.bulk(s);
        } else {
            self.out.push(b'+');
            self.out.extend_from_slice(s);
            self.out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(resp3: bool, f: impl FnOnce(&mut Reply<'_>)) -> String {
        let mut out = Vec::new();
        f(&mut Reply::new(&mut out, resp3));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn resp2_downgrades() {
        assert_eq!(enc(false, |r| r.null()), "$-1\r\n");
        assert_eq!(enc(false, |r| r.null_array()), "*-1\r\n");
        assert_eq!(enc(false, |r| r.map(2)), "*4\r\n");
        assert_eq!(enc(false, |r| r.set(3)), "*3\r\n");
        assert_eq!(enc(false, |r| r.double(1.5)), "$3\r\n1.5\r\n");
        assert_eq!(enc(false, |r| r.boolean(true)), ":1\r\n");
        assert_eq!(enc(false, |r| r.verbatim("txt", b"hi")), "$2\r\nhi\r\n");
    }

    #[test]
    fn resp3_types() {
        assert_eq!(enc(true, |r| r.null()), "_\r\n");
        assert_eq!(enc(true, |r| r.map(2)), "%2\r\n");
        assert_eq!(enc(true, |r| r.set(3)), "~3\r\n");
        assert_eq!(enc(true, |r| r.push(3)), ">3\r\n");
        assert_eq!(enc(true, |r| r.double(f64::INFINITY)), ",inf\r\n");
        assert_eq!(enc(true, |r| r.boolean(false)), "#f\r\n");
        assert_eq!(enc(true, |r| r.verbatim("txt", b"hi")), "=6\r\ntxt:hi\r\n");
        assert_eq!(enc(true, |r| r.big_number("123")), "(123\r\n");
    }

    #[test]
    fn errors_stay_on_one_line() {
        assert_eq!(enc(false, |r| r.error("ERR a\r\nb")), "-ERR a  b\r\n");
        assert_eq!(enc(false, |r| r.int(-42)), ":-42\r\n");
        assert_eq!(enc(false, |r| r.bulk(b"")), "$0\r\n\r\n");
    }
}

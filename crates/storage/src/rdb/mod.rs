//! Redis's RDB format: values in RDB version 10 as Redis 7.0 writes them, read back from every
//! encoding Redis 2.x-7.2 writes, and whole `dump.rdb` files for import.
//!
//! One encoder serves the checkpoint image, DUMP/RESTORE payloads and (later) the diskless
//! replication payload. Tessera writes what Redis 7.0 writes for the same encodings (listpacks
//! for small hashes and sorted sets, intsets, quicklists of listpacks, stream listpacks v2),
//! except that it never LZF-compresses strings. The reader takes ziplists, zipmaps, quicklist v1
//! and the 7.2 set-listpack and stream v3 types as well, and checks every length it reads:
//! malformed input is an [`RdbError`], never a panic, a hang or an unbounded allocation.

pub mod lzf;
pub mod packed;

use std::borrow::Cow;
use std::io::BufRead;

use crate::bytes::SmallBytes;
use crate::types::CompactLimits;
use crate::types::hash::Hash;
use crate::types::list::{End, List};
use crate::types::set::Set;
use crate::types::stream::{ENTRIES_READ_UNKNOWN, Group, Stream, StreamId};
use crate::types::zset::ZSet;
use crate::value::Value;
use packed::{Item, ListpackWriter};

/// The RDB version Tessera writes (Redis 7.0's).
pub const RDB_VERSION: u16 = 10;
/// The newest RDB version Tessera reads (Redis 7.2's).
pub const RDB_VERSION_MAX: u16 = 11;

// Value types.
pub const TYPE_STRING: u8 = 0;
pub const TYPE_LIST: u8 = 1;
pub const TYPE_SET: u8 = 2;
pub const TYPE_ZSET: u8 = 3;
pub const TYPE_HASH: u8 = 4;
pub const TYPE_ZSET_2: u8 = 5;
pub const TYPE_MODULE: u8 = 6;
pub const TYPE_MODULE_2: u8 = 7;
pub const TYPE_HASH_ZIPMAP: u8 = 9;
pub const TYPE_LIST_ZIPLIST: u8 = 10;
pub const TYPE_SET_INTSET: u8 = 11;
pub const TYPE_ZSET_ZIPLIST: u8 = 12;
pub const TYPE_HASH_ZIPLIST: u8 = 13;
pub const TYPE_LIST_QUICKLIST: u8 = 14;
pub const TYPE_STREAM_LISTPACKS: u8 = 15;
pub const TYPE_HASH_LISTPACK: u8 = 16;
pub const TYPE_ZSET_LISTPACK: u8 = 17;
pub const TYPE_LIST_QUICKLIST_2: u8 = 18;
pub const TYPE_STREAM_LISTPACKS_2: u8 = 19;
pub const TYPE_SET_LISTPACK: u8 = 20;
pub const TYPE_STREAM_LISTPACKS_3: u8 = 21;

// File opcodes.
const OP_FUNCTION2: u8 = 0xF5;
const OP_FUNCTION: u8 = 0xF6;
const OP_MODULE_AUX: u8 = 0xF7;
const OP_IDLE: u8 = 0xF8;
const OP_FREQ: u8 = 0xF9;
const OP_AUX: u8 = 0xFA;
const OP_RESIZEDB: u8 = 0xFB;
const OP_EXPIRETIME_MS: u8 = 0xFC;
const OP_EXPIRETIME: u8 = 0xFD;
const OP_SELECTDB: u8 = 0xFE;
pub const OP_EOF: u8 = 0xFF;

/// Quicklist node containers (RDB type 18).
const QUICKLIST_PLAIN: u64 = 1;
const QUICKLIST_PACKED: u64 = 2;
/// Redis's default `list-max-listpack-size -2`: nodes of up to 8 KB.
const LIST_NODE_BYTES: usize = 8192;

/// Redis's CRC-64 (Jones) of `data`, as DUMP payloads and RDB files carry it. crc-fast folds
/// with carry-less multiplication (PCLMULQDQ/VPCLMULQDQ): about 28 GB/s here against 3 GB/s for
/// slice-by-16 tables, which made the checksum a quarter of a full sync's CPU time.
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Redis, data)
}

/// A running CRC-64 of an RDB file written piece by piece.
pub type Crc64Digest = crc_fast::Digest;

/// A running CRC-64 for an RDB file written piece by piece.
pub fn crc64_digest() -> Crc64Digest {
    crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Redis)
}

/// The start of an RDB file as Redis 7.0 writes it: the signature, the auxiliary fields, the
/// function libraries' codes, database 0 and its sizes. Keys follow (each as
/// [`write_file_key`] writes it), then `OP_EOF` and the CRC-64 of everything before it.
pub fn write_file_header(
    out: &mut Vec<u8>,
    aux: &[(&str, &[u8])],
    functions: &[Vec<u8>],
    keys: u64,
    expires: u64,
) {
    out.extend_from_slice(format!("REDIS{RDB_VERSION:04}").as_bytes());
    for (k, v) in aux {
        out.push(OP_AUX);
        write_string(out, k.as_bytes());
        write_string(out, v);
    }
    for code in functions {
        write_function(out, code);
    }
    out.push(OP_SELECTDB);
    write_len(out, 0);
    out.push(OP_RESIZEDB);
    write_len(out, keys);
    write_len(out, expires);
}

/// A function library's code (`RDB_OPCODE_FUNCTION2`), as in RDB files and FUNCTION DUMP.
pub fn write_function(out: &mut Vec<u8>, code: &[u8]) {
    out.push(OP_FUNCTION2);
    write_blob(out, code);
}

/// One key of an RDB file: its expiry, type, name and value.
pub fn write_file_key(out: &mut Vec<u8>, key: &[u8], expire_ms: Option<i64>, v: &Value) {
    if let Some(at) = expire_ms {
        out.push(OP_EXPIRETIME_MS);
        out.extend_from_slice(&at.to_le_bytes());
    }
    out.push(value_type(v));
    write_string(out, key);
    write_value_body(out, v);
}

/// What is wrong with RDB input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RdbError {
    #[error("unexpected end of data")]
    Truncated,
    #[error("corrupt data: {0}")]
    Corrupt(&'static str),
    #[error("value type {0} is not supported (module values cannot be loaded)")]
    Unsupported(u8),
    #[error("{0}")]
    Io(String),
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Appends an RDB length.
pub fn write_len(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if n <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Appends an integer in the string integer encoding when it fits 32 bits; `false` otherwise.
fn write_int_encoded(out: &mut Vec<u8>, v: i64) -> bool {
    if let Ok(b) = i8::try_from(v) {
        out.extend_from_slice(&[0xC0, b as u8]);
    } else if let Ok(h) = i16::try_from(v) {
        out.push(0xC1);
        out.extend_from_slice(&h.to_le_bytes());
    } else if let Ok(w) = i32::try_from(v) {
        out.push(0xC2);
        out.extend_from_slice(&w.to_le_bytes());
    } else {
        return false;
    }
    true
}

/// Appends a string as Redis's `rdbSaveRawString` does (short canonical integers take the
/// integer encoding), without compression.
pub fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() <= 11
        && let Some(v) = tessera_protocol::num::parse_i64(s)
        && write_int_encoded(out, v)
    {
        return;
    }
    write_blob(out, s);
}

/// Appends bytes with their length, never integer-encoded (packed blobs).
fn write_blob(out: &mut Vec<u8>, s: &[u8]) {
    write_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

fn write_int_string(out: &mut Vec<u8>, v: i64) {
    if !write_int_encoded(out, v) {
        write_blob(out, itoa::Buffer::new().format(v).as_bytes());
    }
}

/// A stream ID as the 16 big-endian bytes of Redis's `streamEncodeID`.
fn write_stream_id_raw(out: &mut Vec<u8>, id: StreamId) {
    out.extend_from_slice(&id.ms.to_be_bytes());
    out.extend_from_slice(&id.seq.to_be_bytes());
}

/// The RDB type byte Tessera writes for `v`.
pub fn value_type(v: &Value) -> u8 {
    match v {
        Value::Int(_) | Value::Str(_) | Value::Raw(_) => TYPE_STRING,
        Value::List(_) => TYPE_LIST_QUICKLIST_2,
        Value::Set(s) => match **s {
            Set::Ints(_) => TYPE_SET_INTSET,
            Set::Table(_) => TYPE_SET,
        },
        Value::Hash(h) => match **h {
            Hash::Packed(_) => TYPE_HASH_LISTPACK,
            Hash::Table(_) => TYPE_HASH,
        },
        Value::ZSet(z) => match **z {
            ZSet::Packed(_) => TYPE_ZSET_LISTPACK,
            ZSet::Large(_) => TYPE_ZSET_2,
        },
        Value::Stream(_) => TYPE_STREAM_LISTPACKS_2,
    }
}

/// Appends `v`'s type byte and its RDB encoding.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    out.push(value_type(v));
    write_value_body(out, v);
}

/// Appends `v`'s RDB encoding without the type byte (an RDB file puts the key in between).
pub fn write_value_body(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Int(n) => write_int_string(out, *n),
        Value::Str(s) => write_string(out, s.as_bytes()),
        Value::Raw(s) => write_string(out, s),
        Value::List(l) => write_list(out, l),
        Value::Set(s) => match &**s {
            Set::Ints(v) => write_blob(out, &packed::write_intset(v)),
            Set::Table(_) => {
                write_len(out, s.len() as u64);
                let mut buf = itoa::Buffer::new();
                for m in s.iter() {
                    write_string(out, m.bytes(&mut buf));
                }
            }
        },
        Value::Hash(h) => match &**h {
            Hash::Packed(_) => {
                let mut w = ListpackWriter::new();
                for (f, v) in h.iter() {
                    w.push_str(f);
                    w.push_str(v);
                }
                write_blob(out, &w.finish());
            }
            Hash::Table(_) => {
                write_len(out, h.len() as u64);
                for (f, v) in h.iter() {
                    write_string(out, f);
                    write_string(out, v);
                }
            }
        },
        Value::ZSet(z) => match &**z {
            ZSet::Packed(_) => {
                let mut w = ListpackWriter::new();
                let mut score = Vec::with_capacity(24);
                for e in z.iter() {
                    w.push_str(e.member.as_bytes());
                    score.clear();
                    tessera_protocol::num::write_g17(&mut score, e.score);
                    w.push_str(&score);
                }
                write_blob(out, &w.finish());
            }
            ZSet::Large(_) => {
                // Highest first, as Redis saves its skiplist (so loading appends in order).
                write_len(out, z.len() as u64);
                for e in z.iter().rev() {
                    write_string(out, e.member.as_bytes());
                    out.extend_from_slice(&e.score.to_le_bytes());
                }
            }
        },
        Value::Stream(s) => write_stream(out, s),
    }
}

fn write_list(out: &mut Vec<u8>, l: &List) {
    let mut nodes: Vec<Vec<u8>> = Vec::new();
    let mut w = ListpackWriter::new();
    for item in l.0.iter() {
        let item = item.as_bytes();
        // A node closes before the element that would take it past 8 KB (Redis's
        // `_quicklistNodeAllowInsert` for `list-max-listpack-size -2`).
        if w.count() > 0 && w.size() + item.len() + 11 > LIST_NODE_BYTES {
            nodes.push(std::mem::take(&mut w).finish());
        }
        w.push_str(item);
    }
    if w.count() > 0 {
        nodes.push(w.finish());
    }
    write_len(out, nodes.len() as u64);
    for node in nodes {
        write_len(out, QUICKLIST_PACKED);
        write_blob(out, &node);
    }
}

fn write_stream(out: &mut Vec<u8>, s: &Stream) {
    let nodes = s.node_listpacks();
    write_len(out, nodes.len() as u64);
    for (master, lp) in nodes {
        let mut key = Vec::with_capacity(16);
        write_stream_id_raw(&mut key, master);
        write_blob(out, &key);
        write_blob(out, &lp);
    }
    write_len(out, s.len());
    write_len(out, s.last_id.ms);
    write_len(out, s.last_id.seq);
    write_len(out, s.first_id.ms);
    write_len(out, s.first_id.seq);
    write_len(out, s.max_deleted_id.ms);
    write_len(out, s.max_deleted_id.seq);
    write_len(out, s.entries_added);
    write_len(out, s.groups.len() as u64);
    for (name, g) in &s.groups {
        write_string(out, name);
        write_len(out, g.last_id.ms);
        write_len(out, g.last_id.seq);
        write_len(out, g.entries_read as u64);
        write_len(out, g.pel.len() as u64);
        for (id, nack) in &g.pel {
            write_stream_id_raw(out, *id);
            out.extend_from_slice(&nack.delivery_time.to_le_bytes());
            write_len(out, nack.delivery_count);
        }
        write_len(out, g.consumers.len() as u64);
        for (cname, c) in &g.consumers {
            write_string(out, cname);
            out.extend_from_slice(&c.seen_time.to_le_bytes());
            write_len(out, c.pel.len() as u64);
            for id in &c.pel {
                write_stream_id_raw(out, *id);
            }
        }
    }
}

/// A DUMP payload: type, value, RDB version and CRC-64, as Redis's `createDumpPayload`.
pub fn dump(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(&mut out, v);
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Why a RESTORE payload was refused, with Redis's reply texts.
#[derive(Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// `DUMP payload version or checksum are wrong`.
    VersionOrChecksum,
    /// `Bad data format`.
    BadData(RdbError),
}

/// Checks a DUMP payload's footer and decodes its value.
pub fn restore(payload: &[u8], limits: &CompactLimits) -> Result<Value, PayloadError> {
    let body_len = check_footer(payload)?;
    let mut r = Reader::new(&payload[..body_len]);
    let decode = |r: &mut Reader<'_>| -> Result<Value, RdbError> {
        let kind = r.u8()?;
        let v = read_value(r, kind, limits)?;
        if r.position() != body_len as u64 {
            return Err(RdbError::Corrupt("bytes after the value"));
        }
        Ok(v)
    };
    decode(&mut r).map_err(PayloadError::BadData)
}

/// Checks a FUNCTION DUMP payload's footer and returns its library codes. A record that is not
/// a library is `BadData(Unsupported(type))`.
pub fn restore_functions(payload: &[u8]) -> Result<Vec<Vec<u8>>, PayloadError> {
    let body_len = check_footer(payload)?;
    let mut r = Reader::new(&payload[..body_len]);
    let mut codes = Vec::new();
    while r.position() < body_len as u64 {
        let kind = r.u8().map_err(PayloadError::BadData)?;
        if kind != OP_FUNCTION2 {
            return Err(PayloadError::BadData(RdbError::Unsupported(kind)));
        }
        codes.push(r.string().map_err(PayloadError::BadData)?.into_owned());
    }
    Ok(codes)
}

/// Checks a payload's RDB version and CRC-64; returns the length of what they cover.
fn check_footer(payload: &[u8]) -> Result<usize, PayloadError> {
    let Some(body_len) = payload.len().checked_sub(10) else {
        return Err(PayloadError::VersionOrChecksum);
    };
    let footer = &payload[body_len..];
    let version = u16::from_le_bytes([footer[0], footer[1]]);
    if version > RDB_VERSION_MAX {
        return Err(PayloadError::VersionOrChecksum);
    }
    let crc = u64::from_le_bytes(footer[2..].try_into().expect("8 bytes"));
    if crc64(&payload[..body_len + 2]) != crc {
        return Err(PayloadError::VersionOrChecksum);
    }
    Ok(body_len)
}

// ---------------------------------------------------------------------------------------------
// Reading

enum Src<'a> {
    Slice(&'a [u8]),
    /// Read through the stream's own buffer: nothing is read ahead of what is decoded, so
    /// what follows the RDB data stays in the stream (a replica's command stream).
    Stream(Box<dyn BufRead + 'a>),
}

/// RDB input: a byte slice (payloads, checkpoint records) or a stream (files), with the
/// running CRC-64 of what was read from a stream.
pub struct Reader<'a> {
    src: Src<'a>,
    pos: u64,
    crc: Option<Crc64Digest>,
}

/// A length, or the special string encodings.
enum Len {
    Len(u64),
    Special(u8),
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            src: Src::Slice(buf),
            pos: 0,
            crc: None,
        }
    }

    /// A reader of a stream, keeping the CRC-64 of the bytes read.
    pub fn from_read(r: impl BufRead + 'a) -> Self {
        Reader {
            src: Src::Stream(Box::new(r)),
            pos: 0,
            crc: Some(crc64_digest()),
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn bytes(&mut self, n: usize) -> Result<Cow<'a, [u8]>, RdbError> {
        match &mut self.src {
            Src::Slice(b) => {
                let at = self.pos as usize;
                let s: &'a [u8] = b
                    .get(at..at.checked_add(n).ok_or(RdbError::Truncated)?)
                    .ok_or(RdbError::Truncated)?;
                self.pos += n as u64;
                Ok(Cow::Borrowed(s))
            }
            Src::Stream(_) => {
                // Grown as the data arrives, so a corrupt length cannot allocate ahead of it.
                let mut v = Vec::with_capacity(n.min(1 << 20));
                self.stream_read(n, |piece| v.extend_from_slice(piece))?;
                Ok(Cow::Owned(v))
            }
        }
    }

    /// Takes `n` bytes from the stream, handing them to `f` as they sit in its buffer.
    fn stream_read(&mut self, n: usize, mut f: impl FnMut(&[u8])) -> Result<(), RdbError> {
        let Src::Stream(r) = &mut self.src else {
            unreachable!("a stream reader")
        };
        let mut left = n;
        while left > 0 {
            let buf = match r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(RdbError::Io(e.to_string())),
            };
            if buf.is_empty() {
                return Err(RdbError::Truncated);
            }
            let take = buf.len().min(left);
            let piece = &buf[..take];
            if let Some(d) = &mut self.crc {
                d.update(piece);
            }
            f(piece);
            r.consume(take);
            left -= take;
        }
        self.pos += n as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RdbError> {
        if let Src::Slice(_) = self.src {
            let b = self.bytes(N)?;
            return Ok(b[..].try_into().expect("N bytes"));
        }
        let mut out = [0u8; N];
        let mut at = 0;
        self.stream_read(N, |piece| {
            out[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        })?;
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, RdbError> {
        Ok(self.array::<1>()?[0])
    }

    fn i64_le(&mut self) -> Result<i64, RdbError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn len_or_special(&mut self) -> Result<Len, RdbError> {
        let b = self.u8()?;
        Ok(match b >> 6 {
            0 => Len::Len(u64::from(b & 0x3F)),
            1 => Len::Len(u64::from(b & 0x3F) << 8 | u64::from(self.u8()?)),
            2 => match b {
                0x80 => Len::Len(u64::from(u32::from_be_bytes(self.array()?))),
                0x81 => Len::Len(u64::from_be_bytes(self.array()?)),
                _ => return Err(RdbError::Corrupt("unknown length encoding")),
            },
            _ => Len::Special(b & 0x3F),
        })
    }

    /// An RDB length.
    pub fn length(&mut self) -> Result<u64, RdbError> {
        match self.len_or_special()? {
            Len::Len(n) => Ok(n),
            Len::Special(_) => Err(RdbError::Corrupt("string encoding where a length belongs")),
        }
    }

    /// A length used as an element count: at most what the input can hold.
    fn count(&mut self) -> Result<usize, RdbError> {
        let n = self.length()?;
        usize::try_from(n).map_err(|_| RdbError::Corrupt("element count out of range"))
    }

    /// A string in any of its encodings.
    pub fn string(&mut self) -> Result<Cow<'a, [u8]>, RdbError> {
        match self.len_or_special()? {
            Len::Len(n) => {
                let n = usize::try_from(n).map_err(|_| RdbError::Truncated)?;
                self.bytes(n)
            }
            Len::Special(0) => Ok(int_bytes(i64::from(self.array::<1>()?[0] as i8))),
            Len::Special(1) => Ok(int_bytes(i64::from(i16::from_le_bytes(self.array()?)))),
            Len::Special(2) => Ok(int_bytes(i64::from(i32::from_le_bytes(self.array()?)))),
            Len::Special(3) => {
                let clen = self.count()?;
                let len = self.count()?;
                // LZF expands at most about 88 times; a larger claim is corrupt.
                if len > clen.saturating_mul(100) + 64 {
                    return Err(RdbError::Corrupt("LZF length out of range"));
                }
                let compressed = self.bytes(clen)?;
                Ok(Cow::Owned(lzf::decompress(&compressed, len)?))
            }
            Len::Special(_) => Err(RdbError::Corrupt("unknown string encoding")),
        }
    }

    /// A double in the old text encoding (RDB type 3).
    fn text_double(&mut self) -> Result<f64, RdbError> {
        let n = self.u8()?;
        Ok(match n {
            253 => f64::NAN,
            254 => f64::INFINITY,
            255 => f64::NEG_INFINITY,
            n => {
                let b = self.bytes(n as usize)?;
                std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(RdbError::Corrupt("invalid double"))?
            }
        })
    }

    fn stream_id_raw(&mut self) -> Result<StreamId, RdbError> {
        let b: [u8; 16] = self.array()?;
        Ok(StreamId::new(
            u64::from_be_bytes(b[..8].try_into().expect("8")),
            u64::from_be_bytes(b[8..].try_into().expect("8")),
        ))
    }

    fn stream_id_lens(&mut self) -> Result<StreamId, RdbError> {
        Ok(StreamId::new(self.length()?, self.length()?))
    }
}

fn int_bytes(v: i64) -> Cow<'static, [u8]> {
    Cow::Owned(itoa::Buffer::new().format(v).as_bytes().to_vec())
}

fn empty() -> RdbError {
    RdbError::Corrupt("empty collection")
}

fn string_value(s: Cow<'_, [u8]>) -> Value {
    match s {
        Cow::Borrowed(b) => Value::string(b),
        Cow::Owned(v) => Value::string_from_vec(v),
    }
}

/// Reads a value of RDB type `kind`. Collections take the encodings `limits` give them.
pub fn read_value(r: &mut Reader<'_>, kind: u8, limits: &CompactLimits) -> Result<Value, RdbError> {
    Ok(match kind {
        TYPE_STRING => string_value(r.string()?),
        TYPE_LIST => {
            let n = r.count()?;
            let mut l = List::new();
            for _ in 0..n {
                l.push(End::Right, &r.string()?);
            }
            list_value(l)?
        }
        TYPE_LIST_ZIPLIST => {
            let blob = r.string()?;
            let mut l = List::new();
            for item in packed::ziplist(&blob)? {
                l.push(End::Right, &item.to_vec());
            }
            list_value(l)?
        }
        TYPE_LIST_QUICKLIST | TYPE_LIST_QUICKLIST_2 => {
            let nodes = r.count()?;
            let mut l = List::new();
            for _ in 0..nodes {
                let container = if kind == TYPE_LIST_QUICKLIST_2 {
                    r.length()?
                } else {
                    QUICKLIST_PACKED
                };
                let blob = r.string()?;
                match container {
                    QUICKLIST_PLAIN => l.push(End::Right, &blob),
                    QUICKLIST_PACKED => {
                        let items = if kind == TYPE_LIST_QUICKLIST {
                            packed::ziplist(&blob)?
                        } else {
                            packed::listpack(&blob)?
                        };
                        if items.is_empty() {
                            return Err(RdbError::Corrupt("empty quicklist node"));
                        }
                        for item in items {
                            match item {
                                Item::Str(s) => l.push(End::Right, s),
                                Item::Int(_) => l.push(End::Right, &item.to_vec()),
                            }
                        }
                    }
                    _ => return Err(RdbError::Corrupt("unknown quicklist container")),
                }
            }
            list_value(l)?
        }
        TYPE_SET | TYPE_SET_INTSET | TYPE_SET_LISTPACK => {
            let mut s = Set::new();
            let mut add = |m: &[u8]| {
                if s.add(m, limits) {
                    Ok(())
                } else {
                    Err(RdbError::Corrupt("duplicate set member"))
                }
            };
            match kind {
                TYPE_SET => {
                    let n = r.count()?;
                    for _ in 0..n {
                        add(&r.string()?)?;
                    }
                }
                TYPE_SET_INTSET => {
                    let blob = r.string()?;
                    for v in packed::intset(&blob)? {
                        add(itoa::Buffer::new().format(v).as_bytes())?;
                    }
                }
                _ => {
                    let blob = r.string()?;
                    for item in packed::listpack(&blob)? {
                        add(&item.to_vec())?;
                    }
                }
            }
            if s.is_empty() {
                return Err(empty());
            }
            Value::Set(Box::new(s))
        }
        TYPE_ZSET | TYPE_ZSET_2 | TYPE_ZSET_ZIPLIST | TYPE_ZSET_LISTPACK => {
            let zl = limits.zset();
            let mut z = ZSet::new();
            let mut add = |member: &[u8], score: f64| {
                if score.is_nan() {
                    return Err(RdbError::Corrupt("sorted set score is NaN"));
                }
                match z.set(score, member, &zl) {
                    None => Ok(()),
                    Some(_) => Err(RdbError::Corrupt("duplicate sorted set member")),
                }
            };
            match kind {
                TYPE_ZSET | TYPE_ZSET_2 => {
                    let n = r.count()?;
                    for _ in 0..n {
                        let member = r.string()?;
                        let score = if kind == TYPE_ZSET_2 {
                            f64::from_le_bytes(r.array()?)
                        } else {
                            r.text_double()?
                        };
                        add(&member, score)?;
                    }
                }
                _ => {
                    let blob = r.string()?;
                    let items = if kind == TYPE_ZSET_ZIPLIST {
                        packed::ziplist(&blob)?
                    } else {
                        packed::listpack(&blob)?
                    };
                    if items.len() % 2 != 0 {
                        return Err(RdbError::Corrupt("sorted set listpack of odd length"));
                    }
                    for pair in items.chunks_exact(2) {
                        let score = match pair[1] {
                            Item::Int(v) => v as f64,
                            Item::Str(s) => tessera_protocol::num::parse_f64(s)
                                .ok_or(RdbError::Corrupt("invalid sorted set score"))?,
                        };
                        add(&pair[0].to_vec(), score)?;
                    }
                }
            }
            if z.is_empty() {
                return Err(empty());
            }
            Value::ZSet(Box::new(z))
        }
        TYPE_HASH | TYPE_HASH_ZIPMAP | TYPE_HASH_ZIPLIST | TYPE_HASH_LISTPACK => {
            let mut h = Hash::new();
            let mut add = |f: &[u8], v: &[u8]| {
                if h.set(f, v, limits) {
                    Ok(())
                } else {
                    Err(RdbError::Corrupt("duplicate hash field"))
                }
            };
            if kind == TYPE_HASH {
                let n = r.count()?;
                for _ in 0..n {
                    let f = r.string()?;
                    let v = r.string()?;
                    add(&f, &v)?;
                }
            } else {
                let blob = r.string()?;
                let items = match kind {
                    TYPE_HASH_ZIPMAP => packed::zipmap(&blob)?,
                    TYPE_HASH_ZIPLIST => packed::ziplist(&blob)?,
                    _ => packed::listpack(&blob)?,
                };
                if items.len() % 2 != 0 {
                    return Err(RdbError::Corrupt("hash listpack of odd length"));
                }
                for pair in items.chunks_exact(2) {
                    add(&pair[0].to_vec(), &pair[1].to_vec())?;
                }
            }
            if h.is_empty() {
                return Err(empty());
            }
            Value::Hash(Box::new(h))
        }
        TYPE_STREAM_LISTPACKS | TYPE_STREAM_LISTPACKS_2 | TYPE_STREAM_LISTPACKS_3 => {
            Value::Stream(Box::new(read_stream(r, kind)?))
        }
        TYPE_MODULE | TYPE_MODULE_2 => return Err(RdbError::Unsupported(kind)),
        _ => return Err(RdbError::Corrupt("unknown value type")),
    })
}

fn list_value(l: List) -> Result<Value, RdbError> {
    if l.is_empty() {
        return Err(empty());
    }
    Ok(Value::List(Box::new(l)))
}

fn read_stream(r: &mut Reader<'_>, kind: u8) -> Result<Stream, RdbError> {
    let mut s = Stream::default();
    let nodes = r.count()?;
    for _ in 0..nodes {
        let key = r.string()?;
        let key: [u8; 16] = key[..]
            .try_into()
            .map_err(|_| RdbError::Corrupt("stream node key is not 16 bytes"))?;
        let master = StreamId::new(
            u64::from_be_bytes(key[..8].try_into().expect("8")),
            u64::from_be_bytes(key[8..].try_into().expect("8")),
        );
        let lp = r.string()?;
        s.push_listpack_node(master, &lp)?;
    }
    let length = r.length()?;
    if length != s.len() {
        return Err(RdbError::Corrupt(
            "stream length does not match its entries",
        ));
    }
    s.last_id = r.stream_id_lens()?;
    if kind >= TYPE_STREAM_LISTPACKS_2 {
        s.first_id = r.stream_id_lens()?;
        s.max_deleted_id = r.stream_id_lens()?;
        s.entries_added = r.length()?;
    } else {
        s.first_id = s.first().map_or(StreamId::MIN, |e| e.id);
        s.entries_added = s.len();
    }
    if s.last().is_some_and(|e| e.id > s.last_id) {
        return Err(RdbError::Corrupt("stream entry after the last ID"));
    }
    // The history counters the stream's arithmetic relies on.
    if s.entries_added < s.len() {
        return Err(RdbError::Corrupt(
            "stream has fewer entries added than it holds",
        ));
    }
    let groups = r.count()?;
    for _ in 0..groups {
        let name = r.string()?.into_owned();
        let last_id = r.stream_id_lens()?;
        let entries_read = if kind >= TYPE_STREAM_LISTPACKS_2 {
            r.length()? as i64
        } else {
            s.estimate_entries_read(last_id)
                .map_or(ENTRIES_READ_UNKNOWN, |v| v as i64)
        };
        let mut g = Group::new(last_id, entries_read);
        let pending = r.count()?;
        for _ in 0..pending {
            let id = r.stream_id_raw()?;
            let delivery_time = r.i64_le()?;
            let delivery_count = r.length()?;
            g.pel.insert(
                id,
                crate::types::stream::Nack {
                    consumer: SmallBytes::new(b""),
                    delivery_time,
                    delivery_count,
                },
            );
        }
        let consumers = r.count()?;
        let mut owned = std::collections::BTreeSet::new();
        for _ in 0..consumers {
            let cname = r.string()?.into_owned();
            let seen_time = r.i64_le()?;
            if kind >= TYPE_STREAM_LISTPACKS_3 {
                let _active_time = r.i64_le()?;
            }
            g.ensure_consumer(&cname, seen_time);
            let n = r.count()?;
            for _ in 0..n {
                let id = r.stream_id_raw()?;
                let Some(nack) = g.pel.get_mut(&id) else {
                    return Err(RdbError::Corrupt(
                        "consumer entry missing from the group PEL",
                    ));
                };
                if !owned.insert(id) {
                    return Err(RdbError::Corrupt("stream entry owned by two consumers"));
                }
                nack.consumer = SmallBytes::new(&cname);
                if let Some(c) = g.consumers.get_mut(&cname) {
                    c.pel.insert(id);
                }
            }
        }
        if owned.len() != g.pel.len() {
            return Err(RdbError::Corrupt("group PEL entry without a consumer"));
        }
        if s.groups.insert(name, g).is_some() {
            return Err(RdbError::Corrupt("duplicate consumer group"));
        }
    }
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// Files

/// One item of an RDB file.
#[derive(Debug)]
pub enum FileItem {
    /// A key with its value, database, and the expiry and access data saved before it.
    Key {
        db: u64,
        key: Vec<u8>,
        value: Value,
        /// Absolute Unix milliseconds.
        expire_ms: Option<i64>,
        idle_secs: Option<u64>,
        freq: Option<u8>,
    },
    /// A Redis 7 function library (its source code).
    Function(Vec<u8>),
    /// `RESIZEDB`: the sizes of the database that follows.
    Resize { keys: u64, expires: u64 },
    /// An auxiliary field (`redis-ver`, `aof-base`, ...).
    Aux(Vec<u8>, Vec<u8>),
}

/// A streaming reader of a `dump.rdb` file.
pub struct FileReader<'a> {
    r: Reader<'a>,
    pub version: u16,
    db: u64,
    done: bool,
    limits: CompactLimits,
}

impl<'a> FileReader<'a> {
    /// Reads the header (`REDIS` and a four-digit version).
    pub fn open(input: impl BufRead + 'a, limits: CompactLimits) -> Result<Self, RdbError> {
        let mut r = Reader::from_read(input);
        let magic: [u8; 9] = r.array()?;
        if &magic[..5] != b"REDIS" {
            return Err(RdbError::Corrupt("not an RDB file (no REDIS signature)"));
        }
        let version = std::str::from_utf8(&magic[5..])
            .ok()
            .and_then(|v| v.parse::<u16>().ok())
            .ok_or(RdbError::Corrupt("invalid RDB version"))?;
        if !(1..=RDB_VERSION_MAX).contains(&version) {
            return Err(RdbError::Io(format!(
                "RDB version {version} is not supported (this Tessera reads versions 1 to {RDB_VERSION_MAX}, Redis 2.x to 7.2)"
            )));
        }
        Ok(FileReader {
            r,
            version,
            db: 0,
            done: false,
            limits,
        })
    }

    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.r.position()
    }

    /// The next item; `None` after the end marker (and a good checksum).
    pub fn next_item(&mut self) -> Result<Option<FileItem>, RdbError> {
        if self.done {
            return Ok(None);
        }
        let mut expire_ms = None;
        let mut idle_secs = None;
        let mut freq = None;
        loop {
            let op = self.r.u8()?;
            match op {
                OP_EOF => {
                    self.done = true;
                    if self.version >= 5 {
                        let computed = self.r.crc.take().map(|d| d.finalize()).unwrap_or(0);
                        let stored = u64::from_le_bytes(self.r.array()?);
                        if stored != 0 && stored != computed {
                            return Err(RdbError::Corrupt("RDB file checksum mismatch"));
                        }
                    }
                    return Ok(None);
                }
                OP_SELECTDB => self.db = self.r.length()?,
                OP_RESIZEDB => {
                    let keys = self.r.length()?;
                    let expires = self.r.length()?;
                    return Ok(Some(FileItem::Resize { keys, expires }));
                }
                OP_AUX => {
                    let k = self.r.string()?.into_owned();
                    let v = self.r.string()?.into_owned();
                    return Ok(Some(FileItem::Aux(k, v)));
                }
                OP_EXPIRETIME_MS => expire_ms = Some(self.r.i64_le()?),
                OP_EXPIRETIME => {
                    let secs = i32::from_le_bytes(self.r.array()?);
                    expire_ms = Some(i64::from(secs) * 1000);
                }
                OP_IDLE => idle_secs = Some(self.r.length()?),
                OP_FREQ => freq = Some(self.r.u8()?),
                OP_FUNCTION2 => {
                    return Ok(Some(FileItem::Function(self.r.string()?.into_owned())));
                }
                OP_FUNCTION | OP_MODULE_AUX => return Err(RdbError::Unsupported(op)),
                kind => {
                    let key = self.r.string()?.into_owned();
                    let value = read_value(&mut self.r, kind, &self.limits)?;
                    return Ok(Some(FileItem::Key {
                        db: self.db,
                        key,
                        value,
                        expire_ms,
                        idle_secs,
                        freq,
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::stream::NodeLimits;

    fn round_trip(v: &Value) -> Value {
        let payload = dump(v);
        restore(&payload, &CompactLimits::default()).unwrap()
    }

    #[test]
    fn strings_and_lengths() {
        for s in [
            &b""[..],
            b"0",
            b"-1",
            b"12345678901",
            b"123456789012",
            b"007",
            b"hello",
        ] {
            assert_eq!(round_trip(&Value::string(s)), Value::string(s));
        }
        for n in [
            0i64,
            -128,
            127,
            32767,
            -32769,
            i32::MAX as i64,
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(round_trip(&Value::Int(n)), Value::Int(n));
        }
        let big = Value::string(&vec![b'z'; 100_000]);
        assert_eq!(round_trip(&big), big);
        // SET k 1 in Redis 7.0: DUMP is \x00\xc0\x01\x0a\x00 plus the CRC.
        assert_eq!(&dump(&Value::Int(1))[..5], b"\x00\xc0\x01\x0a\x00");
    }

    #[test]
    fn collections_round_trip() {
        let limits = CompactLimits::default();
        let mut h = Hash::new();
        let mut s = Set::new();
        let mut z = ZSet::new();
        let mut l = List::new();
        for i in 0..1000 {
            let k = format!("f{i}");
            h.set(k.as_bytes(), b"v", &limits);
            s.add(itoa::Buffer::new().format(i * 7).as_bytes(), &limits);
            z.set(i as f64 / 3.0, k.as_bytes(), &limits.zset());
            l.push(End::Right, &vec![b'x'; i % 300]);
            if i == 3 {
                let small = [
                    Value::Hash(Box::new(h.clone())),
                    Value::Set(Box::new(s.clone())),
                    Value::ZSet(Box::new(z.clone())),
                    Value::List(Box::new(l.clone())),
                ];
                for v in &small {
                    let back = round_trip(v);
                    assert_eq!(&back, v);
                    assert_eq!(back.encoding(), v.encoding());
                }
            }
        }
        s.add(b"not a number", &limits);
        for v in [
            Value::Hash(Box::new(h)),
            Value::Set(Box::new(s)),
            Value::ZSet(Box::new(z)),
            Value::List(Box::new(l)),
        ] {
            let back = round_trip(&v);
            assert_eq!(back, v);
            assert_eq!(back.encoding(), v.encoding());
        }
    }

    #[test]
    fn stream_round_trip() {
        let mut s = Stream::default();
        for i in 1..=250u64 {
            let v = i.to_string();
            if i % 7 == 0 {
                s.append(
                    StreamId::new(i, 0),
                    &[b"other", v.as_bytes()],
                    NodeLimits::default(),
                );
            } else {
                s.append(
                    StreamId::new(i, 0),
                    &[b"f", v.as_bytes()],
                    NodeLimits::default(),
                );
            }
        }
        s.delete(StreamId::new(5, 0));
        s.max_deleted_id = StreamId::new(5, 0);
        let mut g = Group::new(StreamId::new(10, 0), 9);
        g.ensure_consumer(b"alice", 1000);
        g.ensure_consumer(b"bob", 2000);
        g.deliver(StreamId::new(3, 0), b"alice", 1500);
        g.deliver(StreamId::new(4, 0), b"bob", 2500);
        s.groups.insert(b"g".to_vec(), g);
        let v = Value::Stream(Box::new(s));
        assert_eq!(round_trip(&v), v);
    }

    #[test]
    fn bad_payloads_are_errors() {
        let payload = dump(&Value::string(b"hello world"));
        let mut flipped = payload.clone();
        flipped[3] ^= 1;
        assert_eq!(
            restore(&flipped, &CompactLimits::default()),
            Err(PayloadError::VersionOrChecksum)
        );
        // A valid footer over a truncated body.
        let mut body = payload[..payload.len() - 10 - 3].to_vec();
        body.extend_from_slice(&RDB_VERSION.to_le_bytes());
        let crc = crc64(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            restore(&body, &CompactLimits::default()),
            Err(PayloadError::BadData(_))
        ));
    }
}

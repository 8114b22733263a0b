//! [`Packed`]: a list of byte strings in one buffer, each prefixed by its length as a varint.
//! The compact encoding of small collections: a 10-field hash costs its bytes plus about two
//! bytes per element, scanned linearly (the collections it holds are small by definition).

/// Byte strings packed in one allocation, in insertion order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Packed {
    buf: Vec<u8>,
    len: usize,
}

fn write_varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads a varint at `at`: (value, bytes used).
fn read_varint(buf: &[u8], at: usize) -> (usize, usize) {
    let mut n = 0usize;
    let mut shift = 0;
    let mut i = at;
    loop {
        let b = buf[i];
        n |= usize::from(b & 0x7f) << shift;
        i += 1;
        if b & 0x80 == 0 {
            return (n, i - at);
        }
        shift += 7;
    }
}

impl Packed {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes allocated.
    pub fn heap_size(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends an element.
    pub fn push(&mut self, item: &[u8]) {
        write_varint(&mut self.buf, item.len());
        self.buf.extend_from_slice(item);
        self.len += 1;
    }

    /// The elements with their byte ranges (of the whole entry, prefix included).
    fn entries(&self) -> impl Iterator<Item = (std::ops::Range<usize>, &[u8])> {
        let buf = &self.buf[..];
        let mut at = 0;
        std::iter::from_fn(move || {
            if at >= buf.len() {
                return None;
            }
            let (n, used) = read_varint(buf, at);
            let start = at;
            let data = &buf[at + used..at + used + n];
            at += used + n;
            Some((start..at, data))
        })
    }

    /// The elements.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.entries().map(|(_, d)| d)
    }

    /// The byte range of element `index`.
    fn range_of(&self, index: usize) -> Option<std::ops::Range<usize>> {
        self.entries().nth(index).map(|(r, _)| r)
    }

    /// Element `index`.
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        self.iter().nth(index)
    }

    /// Replaces element `index`.
    pub fn replace(&mut self, index: usize, item: &[u8]) {
        let Some(range) = self.range_of(index) else {
            return;
        };
        let mut entry = Vec::with_capacity(item.len() + 2);
        write_varint(&mut entry, item.len());
        entry.extend_from_slice(item);
        self.buf.splice(range, entry);
    }

    /// Removes `count` elements from `index` on.
    pub fn remove(&mut self, index: usize, count: usize) {
        let Some(first) = self.range_of(index) else {
            return;
        };
        let last = self
            .entries()
            .nth(index + count - 1)
            .map_or(first.end, |(r, _)| r.end);
        self.buf.drain(first.start..last);
        self.len -= count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_replace_remove() {
        let mut p = Packed::new();
        let long = vec![b'x'; 300];
        for item in [&b"a"[..], b"", &long, b"d"] {
            p.push(item);
        }
        assert_eq!(p.len(), 4);
        assert_eq!(p.get(2), Some(&long[..]));
        p.replace(1, b"bb");
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            [&b"a"[..], b"bb", &long, b"d"]
        );
        p.remove(1, 2);
        assert_eq!(p.iter().collect::<Vec<_>>(), [&b"a"[..], b"d"]);
        assert_eq!(p.len(), 2);
    }
}

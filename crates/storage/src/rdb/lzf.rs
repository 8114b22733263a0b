//! LZF decompression (liblzf's `lzf_decompress`), for the compressed strings Redis writes into
//! RDB files and DUMP payloads when `rdbcompression` is on. Tessera writes strings
//! uncompressed (RocksDB compresses its blocks), so only the reader is needed.

use super::RdbError;

/// Decompresses `input` into exactly `len` bytes.
pub fn decompress(input: &[u8], len: usize) -> Result<Vec<u8>, RdbError> {
    let bad = RdbError::Corrupt("invalid LZF data");
    let mut out: Vec<u8> = Vec::with_capacity(len);
    let mut ip = 0;
    while ip < input.len() {
        let ctrl = input[ip] as usize;
        ip += 1;
        if ctrl < 32 {
            // A literal run of ctrl + 1 bytes.
            let run = input.get(ip..ip + ctrl + 1).ok_or(bad.clone())?;
            if out.len() + run.len() > len {
                return Err(bad);
            }
            out.extend_from_slice(run);
            ip += ctrl + 1;
        } else {
            // A back reference: length in the top 3 bits (7 means one more length byte).
            let mut n = ctrl >> 5;
            if n == 7 {
                n += *input.get(ip).ok_or(bad.clone())? as usize;
                ip += 1;
            }
            let lo = *input.get(ip).ok_or(bad.clone())? as usize;
            ip += 1;
            let back = ((ctrl & 0x1F) << 8) + lo + 1;
            n += 2;
            if back > out.len() || out.len() + n > len {
                return Err(bad);
            }
            let from = out.len() - back;
            // Byte by byte: the source may overlap what is being written.
            for i in 0..n {
                let b = out[from + i];
                out.push(b);
            }
        }
    }
    if out.len() != len {
        return Err(bad);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decompresses_literals_and_references() {
        // "aaaaaaaaaa": literal 'a', then a reference one back, 9 long.
        let input = [0x00, b'a', 0xE0, 0x00, 0x00];
        assert_eq!(decompress(&input, 10).unwrap(), b"aaaaaaaaaa");
        assert!(decompress(&input, 9).is_err());
        assert!(decompress(&[0xE0, 0x00, 0x00], 9).is_err());
        assert!(decompress(&[0x05, b'a'], 6).is_err());
    }
}

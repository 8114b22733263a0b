//! Numbers as Redis reads and writes them: `string2ll` (strict integers: no spaces, no `+`, no
//! leading zeros), `string2d` (no leading space, no NaN), and `%.17g` formatting of doubles.

/// Redis's `string2ll`: `-`? then digits with no leading zero, within `i64`, at most 20 bytes.
#[inline]
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [] => return None,
        [b'0'] => return Some(0),
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 || !(b'1'..=b'9').contains(&digits[0]) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

/// Redis's `string2d`: a C `strtod` number taking the whole string, no leading space, not NaN.
/// Accepts `inf`, `-inf`, `+1.5`, `1e10`, `.5`. Hex floats are not accepted.
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    let first = *s.first()?;
    if first.is_ascii_whitespace() || s.len() > 5 * 1024 {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    let v: f64 = text.parse().ok()?;
    if v.is_nan() {
        return None;
    }
    // strtod accepts "infinity" and "inf" case-insensitively, Rust does too; Rust also accepts
    // "nan" (rejected above).
    Some(v)
}

/// Appends `v` formatted as C's `%.17g` (what Redis 7.0 replies for doubles and scores).
pub fn write_g17(out: &mut Vec<u8>, v: f64) {
    write_g(out, v, 17);
}

/// Appends `v` formatted as C's `%.<precision>g` (glibc's spelling of infinities and NaNs;
/// `%.14g` is how Lua 5.1 turns numbers into strings).
pub fn write_g(out: &mut Vec<u8>, v: f64, precision: i32) {
    if v.is_nan() {
        out.extend_from_slice(if v.is_sign_negative() {
            b"-nan"
        } else {
            b"nan"
        });
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"inf" } else { b"-inf" });
        return;
    }
    if v == 0.0 {
        out.extend_from_slice(if v.is_sign_negative() { b"-0" } else { b"0" });
        return;
    }
    // Integral values below 1e<precision> print as integers (all their digits show).
    if v.fract() == 0.0 && v.abs() < 10f64.powi(precision) {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
        return;
    }
    let p = precision;
    let sci = format!("{:.*e}", (p - 1) as usize, v);
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    if !(-4..p).contains(&exp) {
        out.extend_from_slice(trim_fraction(mantissa).as_bytes());
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(itoa::Buffer::new().format(e).as_bytes());
    } else {
        let fixed = format!("{:.*}", (p - 1 - exp) as usize, v);
        out.extend_from_slice(trim_fraction(&fixed).as_bytes());
    }
}

/// `v` formatted as `%.17g`.
pub fn g17(v: f64) -> String {
    let mut out = Vec::with_capacity(24);
    write_g17(&mut out, v);
    String::from_utf8(out).expect("formatted numbers are ASCII")
}

/// Removes trailing zeros of a fraction, and the point if nothing is left after it.
fn trim_fraction(s: &str) -> &str {
    if !s.contains('.') {
        return s;
    }
    s.trim_end_matches('0').trim_end_matches('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_integers() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"1a",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn doubles_like_strtod() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"1e3"), Some(1000.0));
        assert_eq!(parse_f64(b".5"), Some(0.5));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b"1x"), None);
        assert_eq!(parse_f64(b""), None);
    }

    #[test]
    fn g17_matches_printf() {
        let cases = [
            (1.1, "1.1000000000000001"),
            (1.0, "1"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (1e20, "1e+20"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456789.0, "123456789"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (3.0e-7, "2.9999999999999999e-07"),
        ];
        for (v, want) in cases {
            assert_eq!(g17(v), want, "{v}");
        }
    }
}

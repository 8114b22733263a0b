//! Redis's glob-style matcher (`stringmatchlen` in util.c), used by KEYS, SCAN MATCH, CONFIG GET
//! and, later, PSUBSCRIBE and ACL key patterns: `*`, `?`, `[abc]`, `[^a-z]`, `\x`.
//!
//! Like Redis 7.0, a `*` that has already failed to match the rest of the string stops the
//! backtracking early, and nesting is bounded, so no pattern costs more than O(n*m).

/// True if `string` matches `pattern`; `nocase` folds ASCII case.
pub fn matches(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    let mut skip_longer = false;
    match_impl(pattern, string, nocase, &mut skip_longer, 0)
}

fn eq(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

fn match_impl(
    mut p: &[u8],
    mut s: &[u8],
    nocase: bool,
    skip_longer: &mut bool,
    nesting: usize,
) -> bool {
    // Redis protects against deep recursion the same way.
    if nesting > 1000 {
        return false;
    }
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if match_impl(&p[1..], s, nocase, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s = &s[1..];
                }
                *skip_longer = true;
                return false;
            }
            b'?' => s = &s[1..],
            b'[' => {
                p = &p[1..];
                let not = p.first() == Some(&b'^');
                if not {
                    p = &p[1..];
                }
                let mut matched = false;
                loop {
                    if p.is_empty() {
                        // An unterminated class: Redis steps back onto the last byte.
                        break;
                    }
                    if p[0] == b'\\' && p.len() >= 2 {
                        p = &p[1..];
                        if eq(p[0], s[0], nocase) {
                            matched = true;
                        }
                    } else if p[0] == b']' {
                        break;
                    } else if p.len() >= 3 && p[1] == b'-' {
                        let (mut start, mut end) = (p[0], p[2]);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        let mut c = s[0];
                        if nocase {
                            start = start.to_ascii_lowercase();
                            end = end.to_ascii_lowercase();
                            c = c.to_ascii_lowercase();
                        }
                        p = &p[2..];
                        if c >= start && c <= end {
                            matched = true;
                        }
                    } else if eq(p[0], s[0], nocase) {
                        matched = true;
                    }
                    p = &p[1..];
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s = &s[1..];
                if p.is_empty() {
                    // Unterminated class consumed the pattern.
                    return s.is_empty();
                }
            }
            b'\\' if p.len() >= 2 => {
                p = &p[1..];
                if !eq(p[0], s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
            c => {
                if !eq(c, s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob_cases() {
        let yes: &[(&str, &str)] = &[
            ("*", "anything"),
            ("h?llo", "hello"),
            ("h*llo", "heeeello"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("h[b-a]llo", "hallo"),
            ("key:*", "key:000000000001"),
            ("a\\*b", "a*b"),
            ("*a*b*", "xxaxxbxx"),
        ];
        let no: &[(&str, &str)] = &[
            ("h[^e]llo", "hello"),
            ("h?llo", "hllo"),
            ("a\\*b", "axb"),
            ("key:*", "kex:1"),
            ("?", ""),
            // Redis's matcher needs one byte for a star; KEYS and SCAN special-case a lone "*".
            ("*", ""),
            ("abc", "abcd"),
        ];
        for (p, s) in yes {
            assert!(
                matches(p.as_bytes(), s.as_bytes(), false),
                "{p} should match {s}"
            );
        }
        for (p, s) in no {
            assert!(
                !matches(p.as_bytes(), s.as_bytes(), false),
                "{p} should not match {s}"
            );
        }
        assert!(matches(b"HELLO", b"hello", true));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let pattern = "a*".repeat(30) + "b";
        let string = "a".repeat(60);
        let start = std::time::Instant::now();
        assert!(!matches(pattern.as_bytes(), string.as_bytes(), false));
        assert!(start.elapsed().as_secs() < 1);
    }
}

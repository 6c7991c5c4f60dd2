//! The tokens and numbers of a protocol line, shared by every parser (text, meta, admin, reply, forward): it
//! imports nothing from its siblings, so none of them has to import another to read a line.

/// Iterator over the space-separated tokens of a line (runs of spaces count as one separator; tabs are not
/// separators, protocol.md §1).
#[derive(Clone, Debug)]
pub struct Tokens<'a> {
    rest: &'a [u8],
}

impl<'a> Tokens<'a> {
    /// The tokens of `line`.
    pub fn new(line: &'a [u8]) -> Self {
        Tokens { rest: line }
    }

    /// What is left of the line after the tokens taken so far.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&c| c != b' ')?;
        let rest = &self.rest[start..];
        let end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }
}

/// Decimal digits only, fitting a u64.
pub fn parse_u64(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 20 || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    t.iter().try_fold(0u64, |n, &c| {
        n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

/// Decimal digits only, fitting a u32 (client flags: larger values are a parse error, protocol.md §2).
pub fn parse_u32(t: &[u8]) -> Option<u32> {
    parse_u64(t).and_then(|n| u32::try_from(n).ok())
}

/// An optional `-` and decimal digits, fitting an i64.
pub fn parse_i64(t: &[u8]) -> Option<i64> {
    match t.split_first() {
        Some((b'-', digits)) => {
            let n = parse_u64(digits)?;
            // -2^63 is the one value whose magnitude does not fit an i64.
            0i64.checked_sub_unsigned(n)
        }
        _ => i64::try_from(parse_u64(t)?).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"+1"), None);
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"-9223372036854775809"), None);
        assert_eq!(parse_i64(b"-"), None);
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
    }

    #[test]
    fn tokens_skip_runs_of_spaces() {
        let t: Vec<&[u8]> = Tokens::new(b"  a  b c ").collect();
        assert_eq!(t, [&b"a"[..], b"b", b"c"]);
    }
}

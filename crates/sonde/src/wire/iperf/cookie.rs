//! The 37-byte test cookie: 36 characters of RFC 4648 base32 (lowercase),
//! then a NUL.

use super::COOKIE_LEN;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A test cookie as sent on the wire.
pub type Cookie = [u8; COOKIE_LEN];

/// Makes a cookie from 36 random bytes (the caller supplies randomness, so
/// this stays pure).
pub fn make(random: &[u8; COOKIE_LEN - 1]) -> Cookie {
    let mut cookie = [0u8; COOKIE_LEN];
    for (out, byte) in cookie.iter_mut().zip(random) {
        *out = ALPHABET[usize::from(*byte % 32)];
    }
    cookie
}

/// Compares two cookies as iperf3 does (`strncmp` over 37 bytes: the
/// comparison stops at the first NUL).
pub fn matches(a: &Cookie, b: &Cookie) -> bool {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return false;
        }
        if *x == 0 {
            return true;
        }
    }
    true
}

/// The printable part of a cookie (up to the NUL).
pub fn text(cookie: &Cookie) -> String {
    let end = cookie.iter().position(|&b| b == 0).unwrap_or(COOKIE_LEN);
    String::from_utf8_lossy(&cookie[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_is_base32_and_nul_terminated() {
        let cookie = make(&[255u8; 36]);
        assert_eq!(cookie[36], 0);
        assert!(cookie[..36].iter().all(|b| ALPHABET.contains(b)));
        assert_eq!(text(&cookie).len(), 36);
    }

    #[test]
    fn comparison_stops_at_the_nul() {
        let a = make(&[1u8; 36]);
        let mut b = a;
        assert!(matches(&a, &b));
        b[36] = b'X';
        assert!(!matches(&a, &b));
        b = a;
        b[0] = b'z';
        assert!(!matches(&a, &b));
    }
}

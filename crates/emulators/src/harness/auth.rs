//! The key checks: every comparison with a secret is constant-time, so the emulators do not
//! teach timing attacks by example.

use subtle::ConstantTimeEq;

/// Whether `given` is exactly `secret`, in constant time.
pub(crate) fn secret_matches(given: &[u8], secret: &[u8]) -> bool {
    bool::from(given.ct_eq(secret))
}

/// The bytes inside `Authorization: Basic <base64>`, or `None` for anything else.
pub(crate) fn basic_credentials(raw: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let (scheme, token) = text.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    base64_decode(token.trim())
}

/// Standard base64 (RFC 4648 alphabet); padding is optional, nothing else is tolerated.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let data = text.trim_end_matches('=');
    let padding = text.len() - data.len();
    if padding > 2 || data.len() % 4 == 1 || (padding > 0 && (data.len() + padding) % 4 != 0) {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for byte in data.bytes() {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn base64_encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn basic_credentials_and_base64() {
        assert_eq!(base64_decode("MTIzNDp0b2tlbg==").unwrap(), b"1234:token");
        assert_eq!(base64_decode("MTIzNDp0b2tlbg").unwrap(), b"1234:token");
        assert_eq!(base64_decode("").unwrap(), b"");
        for bad in [
            "M",
            "MTIzNDp0b2tlbg=",
            "MTIz=NDp0",
            "MTIzNDp0b2tlbg===",
            "MT!z",
        ] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
        assert_eq!(
            basic_credentials(b"Basic MTIzNDp0b2tlbg=="),
            Some(b"1234:token".to_vec())
        );
        assert_eq!(basic_credentials(b"Bearer MTIzNDp0b2tlbg=="), None);
        assert_eq!(basic_credentials(b"\xff\xfe"), None);
        assert!(secret_matches(b"key", b"key"));
        assert!(!secret_matches(b"key", b"kex"));
        assert!(!secret_matches(b"key", b"key2"));
    }

    proptest! {
        #[test]
        fn base64_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = base64_encode(&bytes);
            prop_assert_eq!(base64_decode(&text), Some(bytes.clone()));
            prop_assert_eq!(base64_decode(text.trim_end_matches('=')), Some(bytes));
        }

        #[test]
        fn no_header_panics(text in any::<String>()) {
            let _ = basic_credentials(text.as_bytes());
            let _ = base64_decode(&text);
        }
    }
}

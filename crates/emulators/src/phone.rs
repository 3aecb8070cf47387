//! Russian mobile numbers, as MAXMA and Premium Bonus store them: the digits `7XXXXXXXXXX`.

/// A Russian mobile number as the digits `7XXXXXXXXXX`: separators `+ - ( ) . space` are
/// dropped and a leading `8` becomes `7`; `None` for anything else.
pub(crate) fn russian_mobile(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw
        .chars()
        .any(|c| !(c.is_ascii_digit() || "+-(). ".contains(c)))
    {
        return None;
    }
    if raw.chars().skip(1).any(|c| c == '+') {
        return None;
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if digits.len() != 11 {
        return None;
    }
    match digits.as_bytes().first() {
        Some(b'7') => Some(digits),
        Some(b'8') if !raw.starts_with('+') => Some(format!("7{}", &digits[1..])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalise_to_eleven_digits() {
        for ok in [
            "+79990000001",
            "79990000001",
            "89990000001",
            "+7 (999) 000-00-01",
            " 8 999 000.00.01 ",
        ] {
            assert_eq!(russian_mobile(ok).as_deref(), Some("79990000001"), "{ok}");
        }
        for bad in [
            "",
            "+",
            "9990000001",
            "+89990000001",
            "799900000011",
            "7999000000a",
            "+7+9990000001",
            "69990000001",
            "７9990000001",
        ] {
            assert_eq!(russian_mobile(bad), None, "{bad}");
        }
    }
}

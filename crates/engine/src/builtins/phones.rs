//! Russian phone numbers in the forms vendors want them.

use super::BuiltinError;

/// A Russian phone as 11 digits starting with 7: `"+7 (555) 123-45-67"`, `"8 555 123 45 67"`,
/// `"9551234567"` (10 digits: the country code is added) and `"75551234567"` all give
/// `"75551234567"`.
///
/// Accepted: digits, whitespace, `-`, `(`, `)`, `.`, and one `+` at the start. A leading `8` of
/// an 11-digit number is the domestic trunk prefix and becomes `7`; with a `+`, the number must be
/// `+7` and 11 digits. Anything else (other countries, too few or too many digits, letters) is
/// an error.
pub fn phone_digits(s: &str) -> Result<String, BuiltinError> {
    russian_phone(s, "phone_digits")
}

/// The phone in E.164, `"+75551234567"` (UDS, MAXMA). Same rules as [`phone_digits`].
pub fn phone_e164(s: &str) -> Result<String, BuiltinError> {
    russian_phone(s, "phone_e164").map(|digits| format!("+{digits}"))
}

/// Premium Bonus's phone form `7XXXXXXXXXX` (11 digits, no `+`): the same result as
/// [`phone_digits`], under the name the Premium Bonus mapping reads naturally.
pub fn phone_7(s: &str) -> Result<String, BuiltinError> {
    russian_phone(s, "phone_7")
}

fn russian_phone(s: &str, function: &'static str) -> Result<String, BuiltinError> {
    let invalid = |reason: String| BuiltinError::InvalidPhone { function, reason };
    let s = s.trim();
    let (plus, rest) = match s.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let mut digits = String::with_capacity(11);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '-' | '(' | ')' | '.' => {}
            c if c.is_whitespace() => {}
            '+' => return Err(invalid("has a '+' that is not at the start".into())),
            other => {
                return Err(invalid(format!(
                    "contains {other:?}; only digits, spaces, '-', '(', ')', '.' and a leading \
                     '+' are allowed"
                )));
            }
        }
    }
    let count = digits.len();
    match digits.as_bytes().first() {
        None => Err(invalid("has no digits".into())),
        Some(b'7') if count == 11 => Ok(digits),
        Some(_) if plus => Err(invalid(format!(
            "is not a Russian number: with '+' it must be +7 and 11 digits, got {count} digits \
             starting with {}",
            &digits[..1]
        ))),
        Some(b'8') if count == 11 => Ok(format!("7{}", &digits[1..])),
        Some(_) if count == 10 => Ok(format!("7{digits}")),
        Some(_) if count == 11 => Err(invalid(format!(
            "has 11 digits starting with {}; expected 7 or 8",
            &digits[..1]
        ))),
        Some(_) => Err(invalid(format!(
            "has {count} digits; expected 10 (without the country code) or 11 (starting with 7 \
             or 8)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalise_to_eleven_digits() {
        for input in [
            "+7 (555) 123-45-67",
            "8 555 123 45 67",
            "5551234567",
            "75551234567",
            "+75551234567",
            "8(555)123-45-67",
            " +7 555 123 4567 ",
            "7.555.123.45.67",
        ] {
            assert_eq!(phone_digits(input).unwrap(), "75551234567", "{input}");
            assert_eq!(phone_7(input).unwrap(), "75551234567", "{input}");
            assert_eq!(phone_e164(input).unwrap(), "+75551234567", "{input}");
        }
        assert_eq!(phone_digits("9551234567").unwrap(), "79551234567");
        assert_eq!(phone_digits("800 123 45 67").unwrap(), "78001234567");
    }

    #[test]
    fn phone_errors() {
        let reason = |s: &str| match phone_digits(s) {
            Err(BuiltinError::InvalidPhone { function, reason }) => {
                assert_eq!(function, "phone_digits");
                reason
            }
            other => panic!("{s:?} gave {other:?}"),
        };
        assert_eq!(reason(""), "has no digits");
        assert_eq!(reason(" - "), "has no digits");
        assert!(reason("555123456").contains("has 9 digits"));
        assert!(reason("755512345678").contains("has 12 digits"));
        assert!(reason("95551234567").contains("starting with 9; expected 7 or 8"));
        assert!(reason("+8 555 123 45 67").contains("not a Russian number"));
        assert!(reason("+380 44 123 4567").contains("not a Russian number"));
        assert!(reason("+5551234567").contains("not a Russian number"));
        assert!(reason("+7 555 123 456").contains("not a Russian number"));
        assert!(reason("7 555 123 45 67 ext 1").contains("contains 'e'"));
        assert!(reason("7+5551234567").contains("'+' that is not at the start"));
        assert_eq!(
            phone_e164("12").unwrap_err().to_string(),
            "phone_e164: the phone has 2 digits; expected 10 (without the country code) or 11 \
             (starting with 7 or 8)"
        );
        assert!(matches!(
            phone_7("x"),
            Err(BuiltinError::InvalidPhone {
                function: "phone_7",
                ..
            })
        ));
    }
}

//! Stable UUIDs for vendor ids that are not UUIDs.

use uuid::Uuid;

/// The namespace of [`uuid_v5`]: `Uuid::new_v5(&Uuid::NAMESPACE_URL,
/// b"https://github.com/loyalty-bridge/loyalty-bridge")`, written out as a constant (a test checks
/// the derivation).
///
/// **Never change it**: MoySklad stores the ids we give it (search rows' `id`), and a different
/// namespace changes every one of them, so stored customers would no longer match.
pub const UUID_NAMESPACE: Uuid = Uuid::from_u128(0xae592ffb_47ab_523f_8fec_1f603b2ff51e);

/// A stable GUID (version 5, lowercase, hyphenated) for a vendor id that is not a GUID, e.g. a
/// numeric UDS participant id: the same `name` always gives the same GUID, different names give
/// different ones. Namespace: [`UUID_NAMESPACE`]. The GUID cannot be turned back into the id:
/// keep the vendor id too.
pub fn uuid_v5(name: &str) -> String {
    Uuid::new_v5(&UUID_NAMESPACE, name.as_bytes())
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_namespace_is_derived_from_the_project_url() {
        assert_eq!(
            UUID_NAMESPACE,
            Uuid::new_v5(
                &Uuid::NAMESPACE_URL,
                b"https://github.com/loyalty-bridge/loyalty-bridge"
            )
        );
    }

    #[test]
    fn uuid_v5_is_stable_lowercase_and_hyphenated() {
        // Pinned: these ids may already be stored by MoySklad.
        assert_eq!(uuid_v5("12345"), "e9a0a887-c9ff-5b2f-babc-975caf7d583b");
        assert_eq!(
            uuid_v5("1099511627776"),
            "b48a239f-37b3-5dcb-ae0e-72728c8ac8d4"
        );
        assert_eq!(uuid_v5(""), "7949efb5-86a5-5a6b-bd67-45a3cbc784b3");
        assert_eq!(uuid_v5("12345"), uuid_v5("12345"));
        assert_ne!(uuid_v5("12345"), uuid_v5("12346"));
        let id = uuid_v5("Иван");
        assert_eq!(id.len(), 36);
        assert_eq!(id, id.to_lowercase());
        assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 5);
    }
}

//! Sealing secrets kept in the store (MoySklad's access token, vendor credentials):
//! XChaCha20-Poly1305 with a random 192-bit nonce, the key from `moysklad_app.encryption_key`.
//!
//! A sealed value reads `v1.<key id>.<base64url(nonce ‖ ciphertext)>`. The key id (4 bytes of
//! the key's SHA-256) tells which key sealed it, so a value sealed with another key is refused
//! with a clear message instead of a bare "decryption failed" — the hook for key rotation
//! (keep the old key to open, seal with the new one), which is not implemented yet. The
//! associated data binds a value to its account and purpose: a sealed value copied to another
//! row does not open.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::config::EncryptionKey;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed with another encryption key (key id {found}, this one is {ours})")]
    OtherKey { found: String, ours: String },
    #[error("not a sealed value")]
    Malformed,
    #[error("does not open with this key (tampered, or bound to another account)")]
    Forged,
}

#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    key_id: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    pub fn new(key: &EncryptionKey) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new((&key.0).into()),
            key_id: hex::encode(&Sha256::digest(key.0)[..4]),
        }
    }

    /// Seals `plain` for `context` (e.g. `access_token:<accountId>`).
    pub fn seal(&self, plain: &str, context: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            // Encryption fails only for messages beyond ~256 GiB.
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("v1.{}.{}", self.key_id, URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<String, SealError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some("v1"), Some(kid), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SealError::Malformed);
        };
        if kid != self.key_id {
            return Err(SealError::OtherKey {
                found: kid.to_string(),
                ours: self.key_id.clone(),
            });
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| SealError::Malformed)?;
        if bytes.len() < 24 + 16 {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Forged)?;
        String::from_utf8(plain).map_err(|_| SealError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_refuses_other_keys_and_contexts() {
        let sealer = Sealer::new(&EncryptionKey([7; 32]));
        let sealed = sealer.seal("secret-access-token", "access_token:acc");
        assert!(!sealed.contains("secret"));
        assert_ne!(
            sealed,
            sealer.seal("secret-access-token", "access_token:acc")
        );
        assert_eq!(
            sealer.open(&sealed, "access_token:acc").unwrap(),
            "secret-access-token"
        );
        assert_eq!(
            sealer.open(&sealed, "access_token:other"),
            Err(SealError::Forged)
        );
        let other = Sealer::new(&EncryptionKey([8; 32]));
        assert!(matches!(
            other.open(&sealed, "access_token:acc"),
            Err(SealError::OtherKey { .. })
        ));
        assert_eq!(sealer.open("garbage", "x"), Err(SealError::Malformed));
        assert!(!format!("{sealer:?}").contains("7, 7"));
    }
}

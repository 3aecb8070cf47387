//! The JWTs of the Vendor API, HS256 with the app's secret key, both ways.
//!
//! MoySklad → us: `Authorization: Bearer <JWT>` with `iat`, `exp`, `jti`. Only HS256 is
//! accepted (`none` and every other algorithm are refused before the signature is looked at);
//! an expired token is refused (5 s leeway for clock skew), so is one without `iat`, issued in
//! the future, or living longer than MoySklad's 300 s (`exp - iat`); a `jti` is accepted once —
//! the caller claims it in the store, shared by instances
//! ([`crate::store::KeyValueStore::claim_once`]).
//!
//! Us → MoySklad: a fresh token per call, `{sub: appUid, iat, exp, jti}`, 60 s lifetime.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Seconds of clock skew tolerated on `exp`.
pub const LEEWAY_SECS: u64 = 5;
/// Lifetime of the tokens we sign (MoySklad allows at most 300 s).
pub const OUR_TOKEN_SECS: i64 = 60;
/// Longest lifetime (`exp - iat`) accepted on MoySklad's tokens: MoySklad signs its calls for
/// 300 s, so a longer-lived token was not minted by MoySklad's usual path, and a leaked one
/// would stay usable for as long as it says.
pub const MAX_LIFETIME_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingClaims {
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingClaims {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

pub use crate::error::JwtRefusal;

/// The Bearer token of an `Authorization` header value.
pub fn bearer(value: Option<&str>) -> Result<&str, JwtRefusal> {
    let value = value.ok_or(JwtRefusal::Missing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(JwtRefusal::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(JwtRefusal::Missing);
    }
    Ok(token.trim())
}

/// Checks algorithm, signature and expiry (the `jti` claim is the caller's to claim).
pub fn verify(token: &str, secret: &str) -> Result<IncomingClaims, JwtRefusal> {
    // The header is read first so that `alg: none` (which jsonwebtoken cannot even parse as an
    // algorithm) and every other algorithm get the same clear refusal.
    let header = jsonwebtoken::decode_header(token).map_err(|e| {
        if token.split('.').next().is_some_and(|h| !h.is_empty()) && is_alg_error(&e) {
            JwtRefusal::Algorithm
        } else {
            JwtRefusal::Malformed
        }
    })?;
    if header.alg != Algorithm::HS256 {
        return Err(JwtRefusal::Algorithm);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECS;
    validation.set_required_spec_claims(&["exp"]);
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<IncomingClaims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature => JwtRefusal::Signature,
            ErrorKind::ExpiredSignature => JwtRefusal::Expired,
            ErrorKind::InvalidAlgorithm => JwtRefusal::Algorithm,
            _ => JwtRefusal::Malformed,
        }
    })?;
    let claims = data.claims;
    if claims.jti.trim().is_empty() || claims.jti.len() > 200 {
        return Err(JwtRefusal::Malformed);
    }
    // `iat` is required (a missing one fails to deserialize above). With `iat` not ahead of
    // our clock and `exp - iat` within MoySklad's 300 s, no token is usable for longer than
    // 300 s (plus the skew) after it was made, whatever `exp` says.
    let skew = LEEWAY_SECS as i64;
    let lifetime = claims.exp.saturating_sub(claims.iat);
    if claims.iat > now_secs().saturating_add(skew)
        || lifetime < 0
        || lifetime > MAX_LIFETIME_SECS + skew
    {
        return Err(JwtRefusal::Lifetime);
    }
    Ok(claims)
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn is_alg_error(e: &jsonwebtoken::errors::Error) -> bool {
    // An unknown `alg` (e.g. "none") fails to deserialize the header.
    matches!(e.kind(), jsonwebtoken::errors::ErrorKind::Json(_))
}

/// A token for one call of ours to the Vendor API.
pub fn sign_ours(app_uid: &str, secret: &str, now_secs: i64) -> String {
    let claims = OutgoingClaims {
        sub: app_uid.to_string(),
        iat: now_secs,
        exp: now_secs + OUR_TOKEN_SECS,
        jti: uuid::Uuid::new_v4().to_string(),
    };
    sign(&claims, secret)
}

/// HS256-signs any claims (tests sign MoySklad's side with it).
pub fn sign<T: Serialize>(claims: &T, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    // Serializing plain claims with an HMAC key cannot fail.
    .unwrap_or_default()
}

/// Checks a token of ours as MoySklad would: HS256, `sub`, `iat` recent (the MoySklad emulator
/// in `crates/emulators` checks the same on its side).
pub fn verify_ours(token: &str, secret: &str, now_secs: i64) -> Result<OutgoingClaims, JwtRefusal> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtRefusal::Malformed)?;
    if header.alg != Algorithm::HS256 {
        return Err(JwtRefusal::Algorithm);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECS;
    validation.set_required_spec_claims::<&str>(&[]);
    validation.validate_exp = false;
    let data = jsonwebtoken::decode::<OutgoingClaims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => JwtRefusal::Signature,
        _ => JwtRefusal::Malformed,
    })?;
    let c = &data.claims;
    if c.iat > now_secs + LEEWAY_SECS as i64 || c.iat < now_secs - 300 || c.exp < now_secs {
        return Err(JwtRefusal::Expired);
    }
    Ok(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn token(exp_in: i64) -> String {
        let claims = IncomingClaims {
            iat: now(),
            exp: now() + exp_in,
            jti: "j-1".into(),
        };
        sign(&claims, SECRET)
    }

    #[test]
    fn accepts_good_refuses_bad_signature_expired_and_other_algorithms() {
        assert_eq!(verify(&token(60), SECRET).unwrap().jti, "j-1");
        assert_eq!(
            verify(&token(60), "another-secret-of-32-bytes......"),
            Err(JwtRefusal::Signature)
        );
        assert_eq!(verify(&token(-60), SECRET), Err(JwtRefusal::Expired));
        let claims = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"iat":{},"exp":{},"jti":"x"}}"#,
            now(),
            now() + 60
        ));
        let none = format!(
            "{}.{claims}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
        );
        assert_eq!(verify(&none, SECRET), Err(JwtRefusal::Algorithm));
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &IncomingClaims {
                iat: now(),
                exp: now() + 60,
                jti: "x".into(),
            },
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(verify(&hs512, SECRET), Err(JwtRefusal::Algorithm));
        assert_eq!(verify("not.a.jwt", SECRET), Err(JwtRefusal::Malformed));
        assert_eq!(bearer(Some("Basic x")), Err(JwtRefusal::Missing));
        assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
    }

    /// Signs raw claims (so a test can leave a claim out).
    fn raw(claims: serde_json::Value) -> String {
        sign(&claims, SECRET)
    }

    #[test]
    fn refuses_long_lived_tokens_and_tokens_without_iat() {
        let now = now();
        // MoySklad's own tokens live 300 s; one that lives decades is not MoySklad's.
        let decades =
            raw(serde_json::json!({"iat": now, "exp": now + 30 * 365 * 86_400, "jti": "d"}));
        assert_eq!(verify(&decades, SECRET), Err(JwtRefusal::Lifetime));
        let just_over = raw(serde_json::json!({
            "iat": now,
            "exp": now + MAX_LIFETIME_SECS + LEEWAY_SECS as i64 + 1,
            "jti": "o"
        }));
        assert_eq!(verify(&just_over, SECRET), Err(JwtRefusal::Lifetime));
        let no_iat = raw(serde_json::json!({"exp": now + 60, "jti": "n"}));
        assert_eq!(verify(&no_iat, SECRET), Err(JwtRefusal::Malformed));
        let null_iat = raw(serde_json::json!({"iat": null, "exp": now + 60, "jti": "n"}));
        assert_eq!(verify(&null_iat, SECRET), Err(JwtRefusal::Malformed));
        // Issued in the future (beyond the clock skew): refused; within it, accepted.
        let ahead = raw(serde_json::json!({"iat": now + 60, "exp": now + 120, "jti": "a"}));
        assert_eq!(verify(&ahead, SECRET), Err(JwtRefusal::Lifetime));
        let skewed = raw(serde_json::json!({"iat": now + 3, "exp": now + 303, "jti": "s"}));
        assert_eq!(verify(&skewed, SECRET).unwrap().jti, "s");
        // MoySklad's usual token: iat now, exp 300 s later (and the documented example shape).
        let usual = raw(serde_json::json!({"iat": now, "exp": now + 300, "jti": "u"}));
        assert_eq!(verify(&usual, SECRET).unwrap().jti, "u");
        // exp before iat is nonsense, not a short token.
        let backwards = raw(serde_json::json!({"iat": now + 4, "exp": now + 2, "jti": "b"}));
        assert_eq!(verify(&backwards, SECRET), Err(JwtRefusal::Lifetime));
    }

    #[test]
    fn our_tokens_verify() {
        let t = sign_ours("app.uid", SECRET, now());
        let c = verify_ours(&t, SECRET, now()).unwrap();
        assert_eq!(c.sub, "app.uid");
        assert!(c.exp - c.iat <= 300);
        assert_eq!(verify_ours(&t, "x", now()), Err(JwtRefusal::Signature));
    }
}

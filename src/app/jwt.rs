//! The JWTs of the Vendor API, HS256 with the app's secret key, both ways.
//!
//! MoySklad → us: `Authorization: Bearer <JWT>` with `iat`, `exp`, `jti`. Only HS256 is
//! accepted (`none` and every other algorithm are refused before the signature is looked at);
//! an expired token is refused (5 s leeway for clock skew); a `jti` is accepted once — the
//! caller claims it in the store, shared by instances ([`crate::store::Store::claim_once`]).
//!
//! Us → MoySklad: a fresh token per call, `{sub: appUid, iat, exp, jti}`, 60 s lifetime.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Seconds of clock skew tolerated on `exp`.
pub const LEEWAY_SECS: u64 = 5;
/// Lifetime of the tokens we sign (MoySklad allows at most 300 s).
pub const OUR_TOKEN_SECS: i64 = 60;

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

/// Why a token was refused (said in the 401 envelope; never contains the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtRefusal {
    #[error("no Bearer token")]
    Missing,
    #[error("algorithm is not HS256")]
    Algorithm,
    #[error("bad signature")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("malformed token or claims")]
    Malformed,
    #[error("token already used (jti replayed)")]
    Replayed,
}

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
    if data.claims.jti.trim().is_empty() || data.claims.jti.len() > 200 {
        return Err(JwtRefusal::Malformed);
    }
    Ok(data.claims)
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

/// HS256-signs any claims (the sandbox signs MoySklad's side with it).
pub fn sign<T: Serialize>(claims: &T, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    // Serializing plain claims with an HMAC key cannot fail.
    .unwrap_or_default()
}

/// Checks a token of ours (the sandbox does, as MoySklad would): HS256, `sub`, `iat` recent.
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

    #[test]
    fn our_tokens_verify() {
        let t = sign_ours("app.uid", SECRET, now());
        let c = verify_ours(&t, SECRET, now()).unwrap();
        assert_eq!(c.sub, "app.uid");
        assert!(c.exp - c.iat <= 300);
        assert_eq!(verify_ours(&t, "x", now()), Err(JwtRefusal::Signature));
    }
}

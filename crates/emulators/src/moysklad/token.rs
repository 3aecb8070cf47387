//! The Vendor API's JWTs, as MoySklad handles them: HS256 with the app's secret key. MoySklad
//! signs its lifecycle calls to the app with `{iat, exp, jti}`; the app signs its Vendor API
//! calls with `{sub: appUid, iat, exp, jti}`. The bridge's side of both is its `app::jwt`; the
//! claims here are the emulator's own, matching it on the wire.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Seconds of clock skew tolerated on `iat`.
const LEEWAY_SECS: i64 = 5;
/// How old an app's token may be (MoySklad allows a lifetime of at most 300 s).
const MAX_AGE_SECS: i64 = 300;

/// What MoySklad puts in the token of a lifecycle call.
#[derive(Debug, Serialize)]
pub(super) struct LifecycleClaims {
    pub(super) iat: i64,
    pub(super) exp: i64,
    pub(super) jti: String,
}

/// What the app puts in the token of a Vendor API call.
#[derive(Debug, Deserialize)]
pub(super) struct AppClaims {
    pub(super) sub: String,
    pub(super) iat: i64,
    pub(super) exp: i64,
    pub(super) jti: String,
}

/// Why an app's token was refused (said in the 401 body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Refusal {
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
}

/// HS256-signs `claims` with `secret`.
pub(super) fn sign<T: Serialize>(claims: &T, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    // Serializing plain claims with an HMAC key cannot fail.
    .unwrap_or_default()
}

/// The Bearer token of an `Authorization` header value.
pub(super) fn bearer(value: Option<&str>) -> Result<&str, Refusal> {
    let value = value.ok_or(Refusal::Missing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(Refusal::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Refusal::Missing);
    }
    Ok(token.trim())
}

/// Checks an app's token as MoySklad would: HS256, the signature, `iat` within the last 300 s
/// (and not ahead of our clock beyond the skew), `exp` not past. `sub` and `jti` are the
/// caller's to check.
pub(super) fn verify_app_token(
    token: &str,
    secret: &str,
    now_secs: i64,
) -> Result<AppClaims, Refusal> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
    if header.alg != Algorithm::HS256 {
        return Err(Refusal::Algorithm);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims::<&str>(&[]);
    validation.validate_exp = false;
    let data = jsonwebtoken::decode::<AppClaims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => Refusal::Signature,
        _ => Refusal::Malformed,
    })?;
    let c = &data.claims;
    if c.iat > now_secs + LEEWAY_SECS || c.iat < now_secs - MAX_AGE_SECS || c.exp < now_secs {
        return Err(Refusal::Expired);
    }
    Ok(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn app_token(claims: serde_json::Value) -> String {
        sign(&claims, SECRET)
    }

    #[test]
    fn app_tokens_are_checked_as_moysklad_would() {
        let now = chrono::Utc::now().timestamp();
        let good = app_token(
            serde_json::json!({"sub": "app.uid", "iat": now, "exp": now + 60, "jti": "j"}),
        );
        let claims = verify_app_token(&good, SECRET, now).unwrap();
        assert_eq!((claims.sub.as_str(), claims.jti.as_str()), ("app.uid", "j"));
        assert_eq!(
            verify_app_token(&good, "x", now).unwrap_err(),
            Refusal::Signature
        );
        let old = app_token(
            serde_json::json!({"sub": "a", "iat": now - 301, "exp": now + 60, "jti": "j"}),
        );
        assert_eq!(
            verify_app_token(&old, SECRET, now).unwrap_err(),
            Refusal::Expired
        );
        let ahead =
            app_token(serde_json::json!({"sub": "a", "iat": now + 6, "exp": now + 60, "jti": "j"}));
        assert_eq!(
            verify_app_token(&ahead, SECRET, now).unwrap_err(),
            Refusal::Expired
        );
        let past =
            app_token(serde_json::json!({"sub": "a", "iat": now - 10, "exp": now - 1, "jti": "j"}));
        assert_eq!(
            verify_app_token(&past, SECRET, now).unwrap_err(),
            Refusal::Expired
        );
        let no_sub = app_token(serde_json::json!({"iat": now, "exp": now + 60, "jti": "j"}));
        assert_eq!(
            verify_app_token(&no_sub, SECRET, now).unwrap_err(),
            Refusal::Malformed
        );
        assert_eq!(
            verify_app_token("not.a.jwt", SECRET, now).unwrap_err(),
            Refusal::Malformed
        );
        assert_eq!(bearer(Some("Basic x")), Err(Refusal::Missing));
        assert_eq!(bearer(None), Err(Refusal::Missing));
        assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
    }
}

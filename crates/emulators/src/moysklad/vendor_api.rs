//! The Vendor API as MoySklad serves it to the app: `PUT|PATCH …/loyalty`, `GET|PUT …/status`,
//! `POST /context/{key}`, each with a fresh app JWT and `Accept-Encoding: gzip`, answered
//! gzip-compressed.

use std::io::Write as _;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::demo::demo;
use super::{SandboxAccount, Shared, token};

pub(super) fn errors(status: StatusCode, code: i64, message: &str) -> (StatusCode, Value) {
    (
        status,
        json!({"errors": [{"error": message, "code": code}]}),
    )
}

fn check_call(shared: &Shared, headers: &HeaderMap) -> Result<(), (StatusCode, Value)> {
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    if !gzip {
        return Err(errors(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            415,
            "Accept-Encoding: gzip is mandatory",
        ));
    }
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let unauthorized = |why: &str| errors(StatusCode::UNAUTHORIZED, 1056, why);
    let token = token::bearer(value).map_err(|e| unauthorized(&e.to_string()))?;
    let claims = token::verify_app_token(token, &shared.secret, chrono::Utc::now().timestamp())
        .map_err(|e| unauthorized(&e.to_string()))?;
    if claims.sub != shared.app_uid {
        return Err(unauthorized("sub is not the appUid"));
    }
    if !shared.lock().seen_jti.insert(claims.jti) {
        return Err(unauthorized("jti replayed"));
    }
    Ok(())
}

pub(super) async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if let Some(what) = path.strip_prefix("/sandbox/") {
        return demo(shared, &method, what, req.uri().query().unwrap_or(""));
    }
    let (status, body) = match check_call(shared, req.headers()) {
        Err(answer) => answer,
        Ok(()) => {
            let bytes = req
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            route(shared, &method, &path, &bytes)
        }
    };
    shared
        .lock()
        .calls
        .push((method.to_string(), path, status.as_u16()));
    // Answers gzip-compressed, as MoySklad does for clients that must accept it.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = encoder.write_all(body.to_string().as_bytes());
    let mut response = Response::new(Full::new(Bytes::from(encoder.finish().unwrap_or_default())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        header::CONTENT_ENCODING,
        http::HeaderValue::from_static("gzip"),
    );
    response
}

fn route(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> (StatusCode, Value) {
    let path = path.strip_prefix("/api/vendor/1.0").unwrap_or(path);
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::POST, ["context", key]) => context(shared, key),
        (m, ["apps", app_id, account_id, what]) => {
            if *app_id != shared.app_id {
                return errors(StatusCode::NOT_FOUND, 2004, "no such app");
            }
            let body: Value = if body.is_empty() {
                Value::Null
            } else {
                match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(_) => return errors(StatusCode::BAD_REQUEST, 2000, "body is not JSON"),
                }
            };
            let mut state = shared.lock();
            if state.refuse_loyalty && *what == "loyalty" {
                return errors(
                    StatusCode::BAD_REQUEST,
                    2006,
                    "the app's descriptor declares no <loyaltyApi/>",
                );
            }
            let Some(account) = state
                .accounts
                .get_mut(*account_id)
                .filter(|a| a.status.is_some())
            else {
                return errors(
                    StatusCode::NOT_FOUND,
                    2004,
                    "the app is not installed on this account",
                );
            };
            app_call(account, m, what, body)
        }
        _ => errors(StatusCode::NOT_FOUND, 404, "unknown Vendor API path"),
    }
}

fn app_call(
    account: &mut SandboxAccount,
    method: &Method,
    what: &str,
    body: Value,
) -> (StatusCode, Value) {
    let status = account.status.clone().unwrap_or_default();
    match (method, what) {
        (&Method::PUT | &Method::PATCH, "loyalty") => {
            if status != "SettingsRequired" && status != "Activated" {
                return errors(
                    StatusCode::BAD_REQUEST,
                    2007,
                    "the app is not in SettingsRequired or Activated",
                );
            }
            let mut settings = if method == Method::PATCH {
                match account.loyalty.clone() {
                    Some(v) => v,
                    None => return errors(StatusCode::NOT_FOUND, 2005, "no loyalty settings yet"),
                }
            } else {
                json!({})
            };
            let Some(fields) = body.as_object() else {
                return errors(StatusCode::BAD_REQUEST, 2000, "body must be an object");
            };
            for (k, v) in fields {
                let ok = match k.as_str() {
                    "url" | "token" => v.as_str().is_some_and(|s| !s.is_empty()),
                    "externalSearch" => v.is_boolean(),
                    _ => false,
                };
                if !ok {
                    return errors(StatusCode::BAD_REQUEST, 2000, &format!("bad field {k}"));
                }
                settings[k] = v.clone();
            }
            if ["url", "token", "externalSearch"]
                .iter()
                .any(|k| settings.get(k).is_none())
            {
                return errors(
                    StatusCode::BAD_REQUEST,
                    2000,
                    "url, token and externalSearch are required",
                );
            }
            account.loyalty = Some(settings.clone());
            (StatusCode::OK, settings)
        }
        (&Method::GET, "status") => (StatusCode::OK, json!({"status": status})),
        (&Method::PUT, "status") => match body["status"].as_str() {
            Some(s @ ("Activated" | "SettingsRequired" | "Activating")) => {
                account.status = Some(s.to_owned());
                (StatusCode::OK, json!({"status": s}))
            }
            _ => errors(StatusCode::BAD_REQUEST, 2000, "unknown status"),
        },
        _ => errors(StatusCode::METHOD_NOT_ALLOWED, 405, "method not allowed"),
    }
}

pub(super) fn context(shared: &Shared, key: &str) -> (StatusCode, Value) {
    let mut state = shared.lock();
    // A key is exchanged once.
    match state.contexts.remove(key) {
        Some(issued) if issued.until > Instant::now() => {
            let permissions = if issued.admin {
                json!({"admin": {"view": "ALL"}})
            } else {
                json!({"admin": {"view": "NO"}})
            };
            (
                StatusCode::OK,
                json!({
                    "id": uuid::Uuid::new_v4().to_string(),
                    "accountId": issued.account_id,
                    "uid": if issued.admin { "admin@sandbox" } else { "cashier@sandbox" },
                    "name": issued.employee,
                    "permissions": permissions,
                }),
            )
        }
        _ => errors(
            StatusCode::NOT_FOUND,
            1017,
            "context key unknown or expired",
        ),
    }
}

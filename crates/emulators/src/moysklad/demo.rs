//! The emulator's own endpoints, for tests and a local demo (not MoySklad's API, no JWT):
//! `POST /sandbox/context` mints a context key, `GET /sandbox/frame` frames the bridge's
//! settings page as MoySklad's UI does.

use std::collections::HashMap;
use std::fmt::Write as _;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::json;

use super::Shared;

/// The sandbox's own endpoints (tests, demo): mint a context key, frame the settings page.
pub(super) fn demo(
    shared: &Shared,
    method: &Method,
    what: &str,
    query: &str,
) -> Response<Full<Bytes>> {
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let account_id = params.get("accountId").cloned().unwrap_or_default();
    let admin = params.get("admin").is_none_or(|a| a != "false");
    let locale = params
        .get("userLocale")
        .cloned()
        .unwrap_or_else(|| "ru_RU".into());
    let reply = |status: StatusCode, content_type: &'static str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        response
    };
    if account_id.is_empty() {
        let body = json!({"errors": [{"error": "accountId is required", "code": 400}]});
        return reply(
            StatusCode::BAD_REQUEST,
            "application/json",
            body.to_string(),
        );
    }
    let default_name = if admin {
        "Sandbox Admin"
    } else {
        "Sandbox Cashier"
    };
    let name = params.get("name").map_or(default_name, String::as_str);
    match (method, what) {
        (&Method::POST, "context") => {
            let key = shared.issue_context(&account_id, admin, name);
            let url = shared.settings_url(&key, &locale);
            let body = json!({"contextKey": key, "url": url});
            reply(StatusCode::OK, "application/json", body.to_string())
        }
        (&Method::GET, "frame") => {
            let key = shared.issue_context(&account_id, admin, name);
            let Some(url) = shared.settings_url(&key, &locale) else {
                return reply(
                    StatusCode::NOT_FOUND,
                    "text/plain; charset=utf-8",
                    "the sandbox does not know the bridge's settings page (--bridge)".into(),
                );
            };
            // The URL is ours (escaped for the attribute anyway).
            let src = escape_html(&url);
            let body = format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>MoySklad sandbox</title></head>\
                 <body style=\"margin:0;font-family:sans-serif;background:#eef1f4\">\
                 <div style=\"padding:8px 16px;background:#1e3a5f;color:#fff\">MoySklad sandbox · app settings</div>\
                 <iframe id=\"app\" src=\"{src}\" style=\"border:0;width:100%;height:calc(100vh - 40px)\"></iframe>\
                 </body></html>"
            );
            reply(StatusCode::OK, "text/html; charset=utf-8", body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "application/json",
            json!({"errors": [{"error": "unknown sandbox path", "code": 404}]}).to_string(),
        ),
    }
}

/// `text` safe inside HTML text and quoted attributes.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Controls other than tab and newline have no business in a page.
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>\u{1}\n"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;&#1;\n"
        );
    }
}

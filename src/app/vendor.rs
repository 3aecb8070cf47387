//! Our calls to MoySklad's Vendor API: a fresh HS256 JWT each time and `Accept-Encoding: gzip`
//! (MoySklad answers 415 without it; reqwest's `gzip` feature sends it and inflates answers).

use std::time::Duration;

use serde_json::{Value, json};

use super::jwt;
use crate::config::MoyskladAppConfig;

/// How a Vendor API call failed. `code` is MoySklad's (2004 not installed, 2006 no
/// `<loyaltyApi/>` in the descriptor, 2007 still activating…).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VendorError {
    #[error("MoySklad answered HTTP {status} (code {code:?}): {message}")]
    Refused {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    #[error("MoySklad could not be reached: {0}")]
    Unreachable(String),
}

#[derive(Clone)]
pub struct VendorApi {
    client: reqwest::Client,
    base: String,
    app_id: String,
    app_uid: String,
    secret: crate::secret::Secret,
}

impl std::fmt::Debug for VendorApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl VendorApi {
    pub fn new(config: &MoyskladAppConfig) -> Result<VendorApi, String> {
        crate::upstream::install_crypto();
        let client = reqwest::Client::builder()
            .user_agent(concat!("loyalty-bridge/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| format!("cannot build the Vendor API client: {e}"))?;
        Ok(VendorApi {
            client,
            base: config.vendor_api_url.clone(),
            app_id: config.app_id.clone(),
            app_uid: config.app_uid.clone(),
            secret: config.secret_key.clone(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, VendorError> {
        let token = jwt::sign_ours(
            &self.app_uid,
            self.secret.expose(),
            chrono::Utc::now().timestamp(),
        );
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .header(http::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| VendorError::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| VendorError::Unreachable(e.without_url().to_string()))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let first = &value["errors"][0];
        Err(VendorError::Refused {
            status: status.as_u16(),
            code: first["code"].as_i64(),
            message: first["error"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned()),
        })
    }

    fn app_path(&self, account_id: &str, tail: &str) -> String {
        format!("/apps/{}/{}{tail}", self.app_id, account_id)
    }

    /// `PUT /apps/{appId}/{accountId}/loyalty`: where MoySklad sends the account's LoyaltyAPI
    /// calls and with which token.
    pub async fn put_loyalty(
        &self,
        account_id: &str,
        url: &str,
        token: &str,
        external_search: bool,
    ) -> Result<Value, VendorError> {
        let body = json!({"url": url, "token": token, "externalSearch": external_search});
        self.call(
            reqwest::Method::PUT,
            &self.app_path(account_id, "/loyalty"),
            Some(&body),
        )
        .await
    }

    /// `PATCH /apps/{appId}/{accountId}/loyalty` with a subset of the settings.
    pub async fn patch_loyalty(
        &self,
        account_id: &str,
        subset: &Value,
    ) -> Result<Value, VendorError> {
        self.call(
            reqwest::Method::PATCH,
            &self.app_path(account_id, "/loyalty"),
            Some(subset),
        )
        .await
    }

    pub async fn get_status(&self, account_id: &str) -> Result<Value, VendorError> {
        self.call(
            reqwest::Method::GET,
            &self.app_path(account_id, "/status"),
            None,
        )
        .await
    }

    /// `PUT /apps/{appId}/{accountId}/status` (`"Activated"` once settings are done).
    pub async fn put_status(&self, account_id: &str, status: &str) -> Result<Value, VendorError> {
        self.call(
            reqwest::Method::PUT,
            &self.app_path(account_id, "/status"),
            Some(&json!({"status": status})),
        )
        .await
    }

    /// `POST /context/{contextKey}`: the employee who opened the settings page.
    pub async fn context(&self, context_key: &str) -> Result<Value, VendorError> {
        let key: String =
            percent_encoding::utf8_percent_encode(context_key, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        self.call(reqwest::Method::POST, &format!("/context/{key}"), None)
            .await
    }
}

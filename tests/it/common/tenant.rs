//! A tenant of a test bridge: the defaults each vendor's tests use (tokens, credentials,
//! settings), changed where a test needs to.

use std::path::{Path, PathBuf};

use super::bridge::{unconfigured_mapping, vendor_mapping};
use super::{API_KEY_A, TOKEN_A};

/// The UDS tenant's MoySklad token, company id and API key.
const UDS_TOKEN: &str = "uds-tenant-token";
pub const UDS_COMPANY: &str = "549755813888";
pub const UDS_KEY: &str = "uds-api-key";
/// The Premium Bonus tenant's MoySklad token, and its token at Premium Bonus.
const PB_TENANT_TOKEN: &str = "pb-tenant-token";
pub const PB_TOKEN: &str = "pb-api-token";

/// Nothing listens here: the vendor URL of tenants whose calls never get that far.
const NOWHERE: &str = "http://127.0.0.1:9";

/// One `[[tenants]]` entry. Its token and credentials reach the config as `${VAR}`s.
#[derive(Clone)]
pub struct TestTenant {
    name: String,
    pub(super) token: String,
    mapping: PathBuf,
    base_url: String,
    credentials: Vec<(String, String)>,
    keys: Vec<String>,
}

impl TestTenant {
    /// `name` on `mapping`, MoySklad token [`TOKEN_A`], a vendor URL nothing listens on, no
    /// credentials.
    pub fn custom(name: &str, mapping: &Path) -> TestTenant {
        TestTenant {
            name: name.into(),
            token: TOKEN_A.into(),
            mapping: mapping.to_path_buf(),
            base_url: NOWHERE.into(),
            credentials: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// `name` on the mapping that maps no operation (every call ends in 503 after parsing).
    pub fn unconfigured(name: &str) -> TestTenant {
        TestTenant::custom(name, &unconfigured_mapping())
    }

    /// "shop" on `mappings/maxma.toml` against `vendor_url`: token [`TOKEN_A`], MAXMA's key
    /// [`API_KEY_A`].
    pub fn maxma(vendor_url: &str) -> TestTenant {
        TestTenant::custom("shop", &vendor_mapping("maxma"))
            .base_url(vendor_url)
            .credential("api_key", API_KEY_A)
    }

    /// "uds-shop" on `mappings/uds.toml` against `vendor_url`: token [`UDS_TOKEN`], company
    /// [`UDS_COMPANY`] with key [`UDS_KEY`], tobacco kept out of the loyalty program.
    pub fn uds(vendor_url: &str) -> TestTenant {
        TestTenant::custom("uds-shop", &vendor_mapping("uds"))
            .token(UDS_TOKEN)
            .base_url(vendor_url)
            .credential("company_id", UDS_COMPANY)
            .credential("api_key", UDS_KEY)
            .keys(r#"settings = { skip_loyalty_skus = ["tobacco"] }"#)
    }

    /// "pb-shop" on `mappings/premiumbonus.toml` against `vendor_url`: token
    /// [`PB_TENANT_TOKEN`], Premium Bonus's token [`PB_TOKEN`].
    pub fn premiumbonus(vendor_url: &str) -> TestTenant {
        TestTenant::custom("pb-shop", &vendor_mapping("premiumbonus"))
            .token(PB_TENANT_TOKEN)
            .base_url(vendor_url)
            .credential("token", PB_TOKEN)
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// Its MoySklad token (`Lognex-Discount-API-Auth-Token`).
    pub fn token(mut self, token: &str) -> Self {
        self.token = token.into();
        self
    }

    pub fn mapping(mut self, mapping: &Path) -> Self {
        self.mapping = mapping.to_path_buf();
        self
    }

    pub fn base_url(mut self, url: &str) -> Self {
        self.base_url = url.into();
        self
    }

    /// Sets one credential (replacing one of the same name).
    pub fn credential(mut self, name: &str, value: &str) -> Self {
        self.credentials.retain(|(n, _)| n != name);
        self.credentials.push((name.into(), value.into()));
        self
    }

    /// The `api_key` credential (MAXMA's processing key, UDS's API key).
    pub fn key(self, api_key: &str) -> Self {
        self.credential("api_key", api_key)
    }

    /// More keys of the tenant, as TOML lines (`limits = {..}`, `settings = {..}`).
    pub fn keys(mut self, keys: &str) -> Self {
        self.keys.push(keys.into());
        self
    }

    /// Its `[[tenants]]` entry; secrets are `${<prefix>_TOKEN}` and
    /// `${<prefix>_CREDENTIAL_<NAME>}`.
    pub(super) fn toml(&self, prefix: &str) -> String {
        let mut text = format!(
            "[[tenants]]\nname = \"{}\"\ntoken = \"${{{prefix}_TOKEN}}\"\nmapping = \"{}\"\nbase_url = \"{}\"\n",
            self.name,
            self.mapping.display(),
            self.base_url
        );
        if !self.credentials.is_empty() {
            let pairs: Vec<String> = self
                .credentials
                .iter()
                .map(|(name, _)| format!("{name} = \"${{{}}}\"", var(prefix, name)))
                .collect();
            text += &format!("credentials = {{ {} }}\n", pairs.join(", "));
        }
        for keys in &self.keys {
            text += &format!("{keys}\n");
        }
        text
    }

    /// The values of the variables [`TestTenant::toml`] refers to.
    pub(super) fn env_vars(&self, prefix: &str) -> Vec<(String, String)> {
        let mut vars = vec![(format!("{prefix}_TOKEN"), self.token.clone())];
        for (name, value) in &self.credentials {
            vars.push((var(prefix, name), value.clone()));
        }
        vars
    }
}

fn var(prefix: &str, credential: &str) -> String {
    format!("{prefix}_CREDENTIAL_{}", credential.to_ascii_uppercase())
}

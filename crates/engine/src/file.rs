//! The mapping file as written (TOML, `deny_unknown_fields`): what ops people edit.
//! [`crate::plan`] compiles it. docs/mapping-keys.md lists every key: a key added here fails
//! `tests/mapping_keys.rs` until the page has its row.

use std::collections::BTreeMap;

use http::Method;
use serde::Deserialize;

/// The HTTP method a step, a compensation or an expected call names (any case); the error
/// says which methods a mapping may use.
pub fn method(text: &str) -> Result<Method, String> {
    match text.to_ascii_uppercase().as_str() {
        "GET" => Ok(Method::GET),
        "POST" => Ok(Method::POST),
        "PUT" => Ok(Method::PUT),
        "PATCH" => Ok(Method::PATCH),
        "DELETE" => Ok(Method::DELETE),
        _ => Err(format!(
            "{text:?} is not one of GET, POST, PUT, PATCH, DELETE"
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    pub vendor: VendorSection,
    /// jq definitions (`def client_query: …;`) available to every expression of the file.
    #[serde(default)]
    pub defs: Option<String>,
    /// Rules applied after every step of every operation, after the operation's own rules
    /// (the vendor's error codes, written once).
    #[serde(default)]
    pub errors: Vec<RuleSection>,
    /// Keyed by operation name (`"retaildemand.recalc"`, …).
    #[serde(default)]
    pub ops: BTreeMap<String, OpSection>,
    #[serde(default)]
    pub examples: Vec<ExampleSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorSection {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The vendor API's production base URL: where app tenants (the settings page) send this
    /// mapping's calls unless `moysklad_app.vendor_base_urls` names another.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Headers sent with every call (templates; credentials as `{.credentials.api_key}`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Default timeout of one upstream call.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Extra attempts for idempotent steps after a transport failure, 5xx or 429 (default 2).
    #[serde(default)]
    pub retries: Option<u32>,
    /// A header the bridge sets to a fresh UUID on every vendor call, retries and compensations
    /// included, for vendors that want a request id never reused (UDS's `X-Origin-Request-Id`).
    #[serde(default)]
    pub call_id_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpSection {
    /// Values remembered by earlier calls, read before anything else: `.recalled.<name>` is the
    /// value stored under the key (a template), or null.
    #[serde(default)]
    pub recall: BTreeMap<String, String>,
    /// Rules checked before the first step (input the vendor cannot work with).
    #[serde(default)]
    pub checks: Vec<RuleSection>,
    #[serde(default)]
    pub steps: Vec<StepSection>,
    #[serde(default)]
    pub errors: Vec<RuleSection>,
    #[serde(default)]
    pub response: Option<ResponseSection>,
    /// Cache keys (templates) to drop when the operation succeeds, e.g. the customer's
    /// balance after a sale.
    #[serde(default)]
    pub invalidate: Vec<String>,
    /// Sales and returns: jq over the finished plan (`.steps…`) for what to keep with the
    /// journal record — vendor operation ids a later return needs (it sees them as `.sale`).
    #[serde(default)]
    pub keep: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSection {
    pub method: String,
    /// Template; holes are percent-encoded path segments.
    pub path: String,
    /// Query parameters, sent in name order; values are templates, percent-encoded exactly
    /// (`+` → `%2B`, space → `%20`).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// jq expression building the JSON body; absent means no body.
    #[serde(default)]
    pub body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSection {
    pub name: String,
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    /// jq condition; the step is skipped when it is false.
    #[serde(default)]
    pub when: Option<String>,
    /// The call may be retried (it changes nothing, or the vendor deduplicates it).
    #[serde(default)]
    pub idempotent: bool,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// The step's answer may be cached under `key` for `ttl_secs`.
    #[serde(default)]
    pub cache: Option<CacheSection>,
    /// A call that undoes this step, made when a later step fails.
    #[serde(default)]
    pub compensate: Option<CallSection>,
    /// After the step succeeds, keep a value for later calls (see `recall`).
    #[serde(default)]
    pub remember: Option<RememberSection>,
    /// Checks of the step's answer once its rules took it as a success; the first that fails
    /// undoes this step and the earlier ones and answers its error.
    #[serde(default)]
    pub verify: Vec<VerifySection>,
}

/// One check of a step's answer (`verify`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySection {
    /// jq condition over the rules' input (`{req, steps, step: {name, status, body, error}, …}`)
    /// that must be true.
    pub that: String,
    /// Answer MoySklad with this error envelope when it is false (a 4xx).
    pub error: ErrorSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RememberSection {
    /// Template of the key (within the tenant).
    pub key: String,
    /// jq expression of the value.
    pub value: String,
    pub ttl_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Template of the cache key (within the tenant).
    pub key: String,
    pub ttl_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    /// Only after this step; absent means after every step.
    #[serde(default)]
    pub step: Option<String>,
    /// jq condition over `{req, steps, step: {name, status, body, error}, …}`.
    pub when: String,
    /// Answer MoySklad with this error envelope.
    #[serde(default)]
    pub error: Option<ErrorSpec>,
    /// Finish the operation successfully now, answering this jq value.
    #[serde(default)]
    pub respond: Option<String>,
    /// Treat the step as successful and go on.
    #[serde(default)]
    pub accept: bool,
    /// The vendor signalled throttling (in a 200 body): pause the tenant's calls this long
    /// (capped by the tenant's `limits.max_pause_ms`). Error rules only.
    #[serde(default)]
    pub pause_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorSpec {
    pub status: u16,
    pub code: i64,
    /// Title shown to the cashier.
    pub error: String,
    /// Text shown to the cashier (template).
    pub message: String,
    #[serde(default)]
    pub parameter: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSection {
    /// jq expression building the LoyaltyAPI answer body.
    pub body: String,
}

/// A golden example: a MoySklad request plus canned vendor answers → the expected vendor
/// requests and the expected MoySklad answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExampleSection {
    pub name: String,
    pub op: String,
    /// The MoySklad request body (JSON text); for the GETs, the query as a JSON object.
    pub request: String,
    /// The tenant's `[tenants.settings]` for this example (a JSON object; absent: `{}`).
    #[serde(default)]
    pub settings: Option<String>,
    /// The tenant's credentials for this example: fake values, as a JSON object of strings
    /// (`{"api_key": "test-key"}`); absent: none, so credential holes render empty.
    #[serde(default)]
    pub credentials: Option<String>,
    /// Values earlier calls remembered, as a JSON object `{"<key>": value}` (keys as rendered by
    /// `remember.key`): what `recall` finds during this example.
    #[serde(default)]
    pub remembered: Option<String>,
    /// For a return: what the journal kept with the sale it returns, as JSON (`{"kept": …}`);
    /// the plan sees it as `.sale`. Without it the bridge does not know the sale.
    #[serde(default)]
    pub sale: Option<String>,
    /// Canned answers by step name.
    #[serde(default)]
    pub upstream: BTreeMap<String, CannedAnswer>,
    /// The upstream calls expected, in order.
    #[serde(default)]
    pub expect_calls: Vec<ExpectedCall>,
    pub expect: ExpectedAnswer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CannedAnswer {
    #[serde(default = "ok_status")]
    pub status: u16,
    /// JSON text; may be omitted for an empty body.
    #[serde(default)]
    pub body: Option<String>,
    /// Instead of an answer: `"timeout"` or `"connect"`.
    #[serde(default)]
    pub fail: Option<String>,
}

fn ok_status() -> u16 {
    200
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedCall {
    pub step: String,
    pub method: String,
    /// Path plus encoded query, relative to the base URL.
    pub path: String,
    /// JSON text compared as JSON.
    #[serde(default)]
    pub body: Option<String>,
    /// Headers checked by name (any case); headers not named are not checked.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderExpectation>,
}

/// What an expected call says of one header: sent with exactly this text (`"…"`), sent with
/// any value (`true`: a fresh id, a timestamp), or not sent at all (`false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderExpectation {
    Value(String),
    Sent,
    Absent,
}

impl<'de> Deserialize<'de> for HeaderExpectation {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HeaderExpectation;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the header's value (text), true (sent, any value) or false (not sent)")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(HeaderExpectation::Value(text.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, sent: bool) -> Result<Self::Value, E> {
                Ok(if sent {
                    HeaderExpectation::Sent
                } else {
                    HeaderExpectation::Absent
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedAnswer {
    pub status: u16,
    /// JSON text compared as JSON; absent means an empty body.
    #[serde(default)]
    pub body: Option<String>,
    /// What must be remembered after the call, as a JSON object `{"<key>": value}`; `null`
    /// means nothing is kept under that key. Keys not named are not checked.
    #[serde(default)]
    pub remembered: Option<String>,
}

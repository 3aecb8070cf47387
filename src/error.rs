//! The one place where failures become answers.
//!
//! Handlers and the server return [`Error`]; [`respond`] turns it into the envelope
//! `{"errors":[{error, parameter, code, error_message}]}` with its status. Nothing else in the crate
//! formats an error body. Texts are Russian because MoySklad shows them to the cashier.
//! The settings page (an HTML page in an iframe) answers its own refusals as HTML, in
//! `app::settings::page_error`.
//!
//! Codes: `999` is a field-level validation error (as in the LoyaltyAPI reference); `28001` is
//! reserved for "customer must confirm registration"; the gateway's own failures use
//! `9000 + HTTP status` so an operator can tell them apart from vendor refusals at a glance.

use std::borrow::Cow;

use bytes::Bytes;
use engine::op::Op;
use http::{HeaderValue, Method, Response, StatusCode, header};
use serde::Serialize;

/// Code of a field-level validation error, as used by the LoyaltyAPI reference.
pub const CODE_INVALID_FIELD: i64 = 999;
/// Reserved by LoyaltyAPI for "customer must confirm registration with a code".
pub const CODE_CONFIRMATION_REQUIRED: i64 = 28001;

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
    #[error("lifetime over 300 s, or issued in the future")]
    Lifetime,
    #[error("malformed token or claims")]
    Malformed,
    #[error("token already used (jti replayed)")]
    Replayed,
}

/// How a vendor call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamFailure {
    #[error("timed out")]
    Timeout,
    #[error("unreachable")]
    Unreachable,
    #[error("answered HTTP {0}")]
    Status(u16),
    /// Not JSON, truncated, or otherwise unusable.
    #[error("answered something that is not JSON")]
    BadAnswer,
    /// The vendor failed repeatedly just now; calls fail fast for a while.
    #[error("vendor failing: circuit open ({retry_ms} ms)")]
    CircuitOpen { retry_ms: u64 },
    /// The tenant's rate limit would have made the call wait longer than allowed.
    #[error("tenant rate limit ({wait_ms} ms to wait)")]
    Throttled { wait_ms: u64 },
}

/// What was wrong with a field, for the cashier-facing title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldProblem {
    Missing,
    WrongType,
    NotAllowed,
    OutOfRange,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("missing auth token header")]
    MissingToken,
    #[error("unknown auth token")]
    UnknownToken,
    /// `/metrics` is protected by `server.metrics_token` and the bearer token was missing or wrong.
    #[error("metrics token missing or wrong")]
    MetricsUnauthorized,
    /// A MoySklad Vendor API call (app lifecycle) whose JWT was refused.
    #[error("Vendor API JWT refused: {reason}")]
    AppUnauthorized { reason: JwtRefusal },
    /// The token belongs to a MoySklad account whose app is suspended.
    #[error("the account's app is suspended")]
    AccountSuspended,
    #[error("no such endpoint: {path}")]
    NotFound { path: String },
    #[error("method not allowed")]
    MethodNotAllowed { allowed: &'static [Method] },
    #[error("request body over {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The request body did not arrive within `server.body_read_timeout_ms`.
    #[error("request body not received within {ms} ms")]
    BodyTimeout { ms: u64 },
    /// hyper refused the request head before it reached a handler (too large, a URI over
    /// its limit, not HTTP): the status hyper chose.
    #[error("request head refused with HTTP {status}")]
    HeadRefused { status: StatusCode },
    #[error("unsupported content encoding {encoding:?}")]
    UnsupportedEncoding { encoding: String },
    /// The body is not JSON at all (bad syntax, not UTF-8, truncated, undecodable gzip).
    #[error("malformed body: {reason}")]
    MalformedBody { reason: String },
    /// A field is missing, of the wrong type or outside its allowed values.
    #[error("invalid field {parameter}: {detail}")]
    InvalidField {
        parameter: String,
        problem: FieldProblem,
        detail: String,
    },
    /// The whole body (or query) has the wrong shape, with no single field to blame.
    #[error("invalid request: {detail}")]
    InvalidRequest { detail: String },
    /// The customer must confirm registration with a code (create with `statusCheck` UNCHECKED
    /// when the program requires it). MoySklad then calls `/counterparty/verify`.
    #[error("customer must confirm registration by code")]
    ConfirmationRequired,
    /// The tenant has no working vendor mapping yet.
    #[error("vendor mapping not configured for tenant {tenant} ({op})")]
    MappingNotConfigured { tenant: String, op: Op },
    /// A vendor call failed in transport, or answered with something we cannot use.
    #[error("upstream step {step}: {failure}")]
    Upstream {
        step: String,
        failure: UpstreamFailure,
    },
    /// The vendor refused, as a mapping rule decided: status, code and texts come from the rule.
    #[error("vendor refused: {code} {title}")]
    Refused {
        status: StatusCode,
        code: i64,
        title: String,
        message: String,
        parameter: Option<String>,
    },
    /// A mapping expression failed at run time, or built an answer that does not fit the
    /// LoyaltyAPI model. A fault of the mapping (or of an unexpected vendor answer): logged in
    /// full, shown to the cashier only as "could not process the vendor's answer".
    #[error("mapping failed in {op} at {at}: {detail}")]
    MappingFailed { op: Op, at: String, detail: String },
    /// The durable store could not be read or written: without it a sale cannot be recorded
    /// exactly once, so nothing is sent to the vendor.
    #[error("store unavailable: {detail}")]
    StoreUnavailable { detail: String },
    /// The same sale or return (same `meta.id`) is being recorded by another request right now.
    #[error("the same {kind} is in progress")]
    InProgress { kind: &'static str },
    /// A return's sale was accepted while the vendor was down and is still waiting in the outbox.
    #[error("the returned sale is still queued for the vendor")]
    SaleQueued,
    /// Our own request deadline ran out before an answer was ready.
    #[error("request deadline of {ms} ms exceeded")]
    DeadlineExceeded { ms: u64 },
    /// A bug: should not happen. Logged with the request id.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::store::StoreError> for Error {
    fn from(err: crate::store::StoreError) -> Self {
        Error::StoreUnavailable {
            detail: err.to_string(),
        }
    }
}

impl Error {
    pub fn invalid(
        parameter: impl Into<String>,
        problem: FieldProblem,
        detail: impl Into<String>,
    ) -> Self {
        Error::InvalidField {
            parameter: parameter.into(),
            problem,
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::MissingToken
            | Error::UnknownToken
            | Error::MetricsUnauthorized
            | Error::AppUnauthorized { .. } => StatusCode::UNAUTHORIZED,
            Error::AccountSuspended => StatusCode::FORBIDDEN,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Error::HeadRefused { status } => *status,
            Error::UnsupportedEncoding { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::MalformedBody { .. }
            | Error::InvalidField { .. }
            | Error::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Error::ConfirmationRequired => StatusCode::PRECONDITION_FAILED,
            Error::Upstream { failure, .. } => match failure {
                UpstreamFailure::Timeout => StatusCode::GATEWAY_TIMEOUT,
                UpstreamFailure::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
                UpstreamFailure::CircuitOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            },
            Error::Refused { status, .. } => *status,
            Error::MappingFailed { .. } => StatusCode::BAD_GATEWAY,
            Error::MappingNotConfigured { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::StoreUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::InProgress { .. } | Error::SaleQueued => StatusCode::CONFLICT,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> i64 {
        match self {
            Error::InvalidField { .. } => CODE_INVALID_FIELD,
            Error::ConfirmationRequired => CODE_CONFIRMATION_REQUIRED,
            Error::Refused { code, .. } => *code,
            other => 9000 + i64::from(other.status().as_u16()),
        }
    }

    fn parameter(&self) -> Option<&str> {
        match self {
            Error::InvalidField { parameter, .. } => Some(parameter),
            Error::Refused { parameter, .. } => parameter.as_deref(),
            _ => None,
        }
    }

    /// Short title (`error`) and the text for the cashier (`error_message`).
    fn texts(&self) -> (Cow<'_, str>, String) {
        let (title, message) = match self {
            Error::MissingToken => (
                "Ошибка авторизации",
                "Не передан ключ доступа (заголовок Lognex-Discount-API-Auth-Token). Проверьте настройки программы лояльности в Моём Складе.".into(),
            ),
            Error::UnknownToken => (
                "Ошибка авторизации",
                "Ключ доступа не принят. Проверьте ключ в настройках программы лояльности в Моём Складе.".into(),
            ),
            Error::AppUnauthorized { reason } => (
                "Ошибка авторизации",
                format!("Запрос Vendor API отклонён: JWT не принят ({reason})."),
            ),
            Error::AccountSuspended => (
                "Подключение приостановлено",
                "Решение приостановлено в Моём Складе (подписка не продлена или отключена); операции программы лояльности недоступны, пока его не возобновят.".into(),
            ),
            Error::MetricsUnauthorized => (
                "Ошибка авторизации",
                "Для /metrics нужен заголовок Authorization: Bearer с токеном из server.metrics_token.".into(),
            ),
            Error::NotFound { path } => (
                "Метод не найден",
                format!("Адрес {path} не поддерживается сервером лояльности. Проверьте адрес сервера в настройках."),
            ),
            Error::MethodNotAllowed { allowed } => (
                "Метод не поддерживается",
                format!("Для этого адреса допустимы только: {}.", method_list(allowed)),
            ),
            Error::PayloadTooLarge { limit } => (
                "Слишком большой запрос",
                format!("Размер запроса превышает допустимые {limit} байт."),
            ),
            Error::BodyTimeout { ms } => (
                "Запрос получен не полностью",
                format!("Тело запроса не получено за {ms} мс; повторите операцию."),
            ),
            Error::HeadRefused { status } => (
                "Некорректный запрос",
                match *status {
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
                        "Заголовки запроса слишком велики.".into()
                    }
                    StatusCode::URI_TOO_LONG => "Адрес запроса слишком длинный.".into(),
                    _ => format!("Запрос не является корректным запросом HTTP (HTTP {}).", status.as_u16()),
                },
            ),
            Error::UnsupportedEncoding { encoding } => (
                "Неподдерживаемое сжатие",
                format!("Сжатие запроса «{encoding}» не поддерживается; используйте gzip или без сжатия."),
            ),
            Error::MalformedBody { reason } => (
                "Некорректный запрос",
                format!("Тело запроса не является корректным JSON: {reason}."),
            ),
            Error::InvalidField {
                parameter,
                problem,
                detail,
            } => {
                let title = match problem {
                    FieldProblem::Missing => "Не указан обязательный параметр",
                    FieldProblem::WrongType => "Неверный тип параметра",
                    FieldProblem::NotAllowed => "Недопустимое значение параметра",
                    FieldProblem::OutOfRange => "Значение параметра вне допустимого диапазона",
                };
                (title, format!("Параметр «{parameter}»: {detail}."))
            }
            Error::InvalidRequest { detail } => ("Некорректный запрос", format!("{detail}.")),
            Error::ConfirmationRequired => (
                "Необходимо подтверждение создания покупателя.",
                "Покупатель должен подтвердить свои данные через код.".into(),
            ),
            Error::MappingNotConfigured { tenant, op } => (
                "Программа лояльности не настроена",
                format!(
                    "Для подключения «{tenant}» не настроено сопоставление с API поставщика лояльности (операция {}). Обратитесь к администратору сервера лояльности.",
                    op.name()
                ),
            ),
            Error::DeadlineExceeded { ms } => (
                "Сервер лояльности не ответил вовремя",
                format!("Ответ не получен за {ms} мс. Повторите операцию."),
            ),
            Error::Upstream { failure, .. } => match failure {
                UpstreamFailure::Timeout => (
                    "Поставщик лояльности не ответил вовремя",
                    "Система лояльности не ответила вовремя. Повторите операцию.".into(),
                ),
                UpstreamFailure::Unreachable => (
                    "Поставщик лояльности недоступен",
                    "Не удалось связаться с системой лояльности. Повторите операцию позже.".into(),
                ),
                UpstreamFailure::Status(status) => (
                    "Ошибка поставщика лояльности",
                    format!("Система лояльности вернула ошибку (HTTP {status}). Повторите операцию позже."),
                ),
                UpstreamFailure::BadAnswer => (
                    "Ошибка поставщика лояльности",
                    "Система лояльности вернула некорректный ответ. Повторите операцию позже.".into(),
                ),
                UpstreamFailure::CircuitOpen { retry_ms } => (
                    "Поставщик лояльности недоступен",
                    format!(
                        "Система лояльности не отвечает на несколько запросов подряд; повторите через {} с.",
                        retry_ms.div_ceil(1000).max(1)
                    ),
                ),
                UpstreamFailure::Throttled { wait_ms } => (
                    "Слишком много запросов к системе лояльности",
                    format!(
                        "Превышен лимит запросов к поставщику для этого подключения; повторите через {} с.",
                        wait_ms.div_ceil(1000).max(1)
                    ),
                ),
            },
            Error::Refused { title, message, .. } => return (Cow::Borrowed(title), message.clone()),
            Error::MappingFailed { .. } => (
                "Ошибка обработки ответа поставщика",
                "Ответ системы лояльности не удалось обработать. Сообщите администратору номер запроса.".into(),
            ),
            Error::StoreUnavailable { .. } => (
                "Сервер лояльности временно не может сохранить операцию",
                "Хранилище сервера лояльности недоступно; операция не выполнена. Повторите через несколько секунд.".into(),
            ),
            Error::InProgress { kind } => (
                "Операция уже выполняется",
                format!(
                    "{} с этим идентификатором уже обрабатывается; повторите через несколько секунд.",
                    if *kind == "return" { "Возврат" } else { "Продажа" }
                ),
            ),
            Error::SaleQueued => (
                "Продажа ещё не передана в систему лояльности",
                "Продажа принята, пока система лояльности была недоступна, и ещё ждёт отправки; повторите возврат позже.".into(),
            ),
            Error::Internal(_) => (
                "Внутренняя ошибка сервера лояльности",
                "Произошла непредвиденная ошибка. Повторите операцию; если ошибка повторяется, сообщите администратору номер запроса.".into(),
            ),
        };
        (Cow::Borrowed(title), message)
    }
}

/// `Allow` header value: the methods, comma-separated.
pub(crate) fn method_list(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Serialize)]
struct Envelope<'a> {
    errors: [ErrorItem<'a>; 1],
}

#[derive(Serialize)]
struct ErrorItem<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter: Option<&'a str>,
    code: i64,
    error_message: String,
}

/// The envelope body of an error, as bytes.
pub fn envelope(err: &Error) -> Bytes {
    let (error, error_message) = err.texts();
    let body = Envelope {
        errors: [ErrorItem {
            error: &error,
            parameter: err.parameter(),
            code: err.code(),
            error_message,
        }],
    };
    // Serializing plain strings and integers cannot fail; fall back to a fixed body anyway.
    serde_json::to_vec(&body).map(Bytes::from).unwrap_or_else(|_| {
        Bytes::from_static(
            br#"{"errors":[{"error":"Internal error","code":9500,"error_message":"Internal error"}]}"#,
        )
    })
}

/// The raw HTTP/1.1 answer that replaces hyper's own body-less one when hyper refuses a request
/// head (see `server::listen::HeadErrorAnswer`): the envelope, and the connection closes.
pub fn head_refused_answer(status: u16) -> Option<Bytes> {
    let status = StatusCode::from_u16(status).ok()?;
    let body = envelope(&Error::HeadRefused { status });
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        body.len()
    );
    let mut answer = Vec::with_capacity(head.len() + body.len());
    answer.extend_from_slice(head.as_bytes());
    answer.extend_from_slice(&body);
    Some(Bytes::from(answer))
}

/// The full HTTP response for an error (the server adds compression and the request id).
pub fn respond(err: &Error) -> Response<Bytes> {
    let mut response = Response::new(envelope(err));
    *response.status_mut() = err.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if let Error::Upstream {
        failure:
            UpstreamFailure::Throttled { wait_ms } | UpstreamFailure::CircuitOpen { retry_ms: wait_ms },
        ..
    } = err
    {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait_ms.div_ceil(1000).max(1)),
        );
    }
    let retry_secs = match err {
        Error::StoreUnavailable { .. } | Error::InProgress { .. } => Some(1),
        Error::SaleQueued => Some(30),
        _ => None,
    };
    if let Some(secs) = retry_secs {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Error::MethodNotAllowed { allowed } = err {
        if let Ok(value) = HeaderValue::from_str(&method_list(allowed)) {
            headers.insert(header::ALLOW, value);
        }
    }
    response
}

/// The texts a failed LoyaltyAPI operation shows the cashier (title, message), for the
/// settings page's credential check, which runs one.
pub fn cashier_texts(err: &Error) -> (String, String) {
    let (title, message) = err.texts();
    (title.into_owned(), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(err: &Error) -> serde_json::Value {
        serde_json::from_slice(&envelope(err)).unwrap()
    }

    #[test]
    fn field_error_names_parameter_and_uses_code_999() {
        let v = body_of(&Error::invalid(
            "positions[2].quantity",
            FieldProblem::OutOfRange,
            "должно быть больше 0",
        ));
        let item = &v["errors"][0];
        assert_eq!(item["parameter"], "positions[2].quantity");
        assert_eq!(item["code"], 999);
        assert_eq!(
            item["error"],
            "Значение параметра вне допустимого диапазона"
        );
        assert!(
            item["error_message"]
                .as_str()
                .unwrap()
                .contains("positions[2].quantity")
        );
    }

    #[test]
    fn every_variant_has_the_required_keys() {
        let all = [
            Error::MissingToken,
            Error::UnknownToken,
            Error::MetricsUnauthorized,
            Error::AppUnauthorized {
                reason: JwtRefusal::Replayed,
            },
            Error::AccountSuspended,
            Error::NotFound { path: "/x".into() },
            Error::MethodNotAllowed {
                allowed: &[Method::GET],
            },
            Error::PayloadTooLarge { limit: 10 },
            Error::UnsupportedEncoding {
                encoding: "br".into(),
            },
            Error::MalformedBody { reason: "x".into() },
            Error::InvalidRequest { detail: "x".into() },
            Error::MappingNotConfigured {
                tenant: "t".into(),
                op: Op::RetaildemandRecalc,
            },
            Error::DeadlineExceeded { ms: 5 },
            Error::Upstream {
                step: "calc".into(),
                failure: UpstreamFailure::Timeout,
            },
            Error::Upstream {
                step: "calc".into(),
                failure: UpstreamFailure::BadAnswer,
            },
            Error::MappingFailed {
                op: Op::RetaildemandRecalc,
                at: "response.body".into(),
                detail: "x".into(),
            },
            Error::Internal("boom".into()),
        ];
        for err in &all {
            let v = body_of(err);
            let item = &v["errors"][0];
            assert!(
                item["error"].as_str().is_some_and(|s| !s.is_empty()),
                "{err:?}"
            );
            assert!(
                item["error_message"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{err:?}"
            );
            assert_eq!(
                item["code"].as_i64(),
                Some(9000 + i64::from(err.status().as_u16()))
            );
            assert!(item.get("parameter").is_none());
            assert!(!err.status().is_success());
        }
    }

    #[test]
    fn confirmation_required_is_412_with_28001() {
        let err = Error::ConfirmationRequired;
        assert_eq!(err.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(body_of(&err)["errors"][0]["code"], 28001);
    }

    #[test]
    fn refusals_carry_the_rule_texts() {
        let err = Error::Refused {
            status: StatusCode::NOT_FOUND,
            code: 1003,
            title: "Покупатель не найден".into(),
            message: "Проверьте телефон".into(),
            parameter: Some("agent".into()),
        };
        let v = body_of(&err);
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        assert_eq!(v["errors"][0]["code"], 1003);
        assert_eq!(v["errors"][0]["error"], "Покупатель не найден");
        assert_eq!(v["errors"][0]["parameter"], "agent");
    }

    #[test]
    fn internal_detail_is_not_shown_to_the_cashier() {
        let v = body_of(&Error::Internal("secret stack detail".into()));
        assert!(!v.to_string().contains("secret stack detail"));
    }

    #[test]
    fn method_not_allowed_sets_allow_header() {
        let r = respond(&Error::MethodNotAllowed {
            allowed: &[Method::GET, Method::POST],
        });
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, POST");
    }
}

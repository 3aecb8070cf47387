//! The settings page's refusals: [`PageError`], rendered by [`respond_page`] as a small HTML
//! page in the employee's language (the page lives in an iframe, so a JSON envelope would
//! show as text). The LoyaltyAPI's own error answers are `crate::error`'s.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};

use super::html::escape;
use super::i18n::Lang;
use crate::error::method_list;

/// Why the settings page refused a request. Rendered by [`respond_page`] as a small HTML page
/// in the employee's language; the server adds the page's security headers.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Opened without `contextKey`: not from MoySklad.
    #[error("no contextKey")]
    NoContext,
    /// A `contextKey` that is not shaped like MoySklad's: not from MoySklad either (refused
    /// before anything is stored or asked).
    #[error("malformed contextKey")]
    BadContext,
    /// Too many page opens (context key exchanges) from the client's address or in total.
    #[error("too many context exchanges (retry in {retry_after_secs} s)")]
    TooManyOpens { retry_after_secs: u64 },
    /// Too many Check / Save posts in one session.
    #[error("too many posts in the session (retry in {retry_after_secs} s)")]
    TooManyPosts { retry_after_secs: u64 },
    /// `appUid` / `appId` of another app.
    #[error("contextKey of another app")]
    OtherApp,
    /// MoySklad did not accept the context key (unknown, expired, already exchanged) or it was
    /// presented here before.
    #[error("context key refused")]
    ContextRefused,
    /// The session id is unknown, expired or idle for too long.
    #[error("session unknown or expired")]
    SessionExpired,
    /// The form's CSRF token is missing or wrong.
    #[error("CSRF token missing or wrong")]
    Csrf,
    /// The `Origin` of a form post is not the page's own.
    #[error("foreign Origin {origin:?}")]
    ForeignOrigin { origin: String },
    /// A change was posted by an employee who is not an administrator.
    #[error("not an administrator")]
    NotAdmin,
    #[error("form over {limit} bytes")]
    TooLarge { limit: usize },
    #[error("form not application/x-www-form-urlencoded")]
    NotAForm,
    #[error("bad form: {detail}")]
    BadForm { detail: String },
    #[error("method not allowed")]
    MethodNotAllowed { allowed: &'static [Method] },
    #[error("no such page")]
    NotFound,
    /// MoySklad's Vendor API could not be reached to exchange the context key.
    #[error("MoySklad unreachable: {detail}")]
    MoyskladUnreachable { detail: String },
    #[error("store unavailable: {detail}")]
    StoreUnavailable { detail: String },
}

impl From<crate::store::StoreError> for PageError {
    fn from(err: crate::store::StoreError) -> Self {
        PageError::StoreUnavailable {
            detail: err.to_string(),
        }
    }
}

impl PageError {
    pub fn status(&self) -> StatusCode {
        match self {
            PageError::NoContext
            | PageError::BadContext
            | PageError::OtherApp
            | PageError::BadForm { .. } => StatusCode::BAD_REQUEST,
            PageError::TooManyOpens { .. } | PageError::TooManyPosts { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            PageError::ContextRefused
            | PageError::SessionExpired
            | PageError::Csrf
            | PageError::ForeignOrigin { .. }
            | PageError::NotAdmin => StatusCode::FORBIDDEN,
            PageError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PageError::NotAForm => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PageError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            PageError::NotFound => StatusCode::NOT_FOUND,
            PageError::MoyskladUnreachable { .. } => StatusCode::BAD_GATEWAY,
            PageError::StoreUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Title and explanation for the employee (details such as store errors stay in the log).
    fn texts(&self, lang: Lang) -> (&'static str, String) {
        let ru = lang == Lang::Ru;
        let pick = |r: &'static str, e: &'static str| if ru { r } else { e };
        match self {
            PageError::NoContext | PageError::BadContext => (
                pick("Откройте настройки из МоегоСклада", "Open the settings from MoySklad"),
                pick(
                    "Эта страница открывается в МоёмСкладе: «Приложения» → решение → «Настройки».",
                    "This page opens inside MoySklad: Apps → the app → Settings.",
                )
                .into(),
            ),
            PageError::TooManyOpens { retry_after_secs } => (
                pick("Слишком много открытий", "Too many openings"),
                if ru {
                    format!(
                        "Настройки открывались слишком часто. Откройте их снова через {retry_after_secs} с."
                    )
                } else {
                    format!(
                        "The settings were opened too often. Open them again in {retry_after_secs} s."
                    )
                },
            ),
            PageError::TooManyPosts { retry_after_secs } => (
                pick("Слишком много попыток", "Too many attempts"),
                if ru {
                    format!(
                        "Проверок и сохранений слишком много подряд. Подождите {retry_after_secs} с, вернитесь назад и повторите."
                    )
                } else {
                    format!(
                        "Too many checks and saves in a row. Wait {retry_after_secs} s, go back and try again."
                    )
                },
            ),
            PageError::OtherApp => (
                pick("Ссылка другого решения", "A link of another app"),
                pick(
                    "Параметры appUid/appId не совпадают с настройками этого сервера.",
                    "appUid/appId do not match this server's app.",
                )
                .into(),
            ),
            PageError::ContextRefused => (
                pick("Ссылка устарела", "The link has expired"),
                pick(
                    "Ключ контекста МоегоСклада действует 5 минут и только один раз. Откройте настройки решения в МоёмСкладе снова.",
                    "MoySklad's context key is valid for 5 minutes and only once. Open the app's settings in MoySklad again.",
                )
                .into(),
            ),
            PageError::SessionExpired => (
                pick("Сеанс завершён", "The session has ended"),
                pick(
                    "Сеанс настройки истёк или неизвестен. Откройте настройки решения в МоёмСкладе снова.",
                    "The settings session expired or is unknown. Open the app's settings in MoySklad again.",
                )
                .into(),
            ),
            PageError::Csrf | PageError::ForeignOrigin { .. } => (
                pick("Запрос отклонён", "Request refused"),
                pick(
                    "Форма отправлена не со страницы настроек этого сеанса. Откройте настройки в МоёмСкладе снова.",
                    "The form was not sent from this session's settings page. Open the settings in MoySklad again.",
                )
                .into(),
            ),
            PageError::NotAdmin => (
                pick("Недостаточно прав", "Not allowed"),
                pick(
                    "Менять настройки может только администратор аккаунта МоегоСклада.",
                    "Only an administrator of the MoySklad account can change the settings.",
                )
                .into(),
            ),
            PageError::TooLarge { limit } => (
                pick("Слишком большая форма", "Form too large"),
                if ru {
                    format!("Форма больше допустимых {limit} байт.")
                } else {
                    format!("The form is over the {limit} bytes allowed.")
                },
            ),
            PageError::NotAForm | PageError::BadForm { .. } => (
                pick("Некорректная форма", "Malformed form"),
                pick(
                    "Форма не распознана. Откройте настройки в МоёмСкладе снова.",
                    "The form could not be read. Open the settings in MoySklad again.",
                )
                .into(),
            ),
            PageError::MethodNotAllowed { allowed } => (
                pick("Метод не поддерживается", "Method not allowed"),
                format!("{}: {}.", pick("Допустимы", "Allowed"), method_list(allowed)),
            ),
            PageError::NotFound => (
                pick("Страница не найдена", "Page not found"),
                pick("Такой страницы нет.", "There is no such page.").into(),
            ),
            PageError::MoyskladUnreachable { .. } => (
                pick("МойСклад недоступен", "MoySklad unreachable"),
                pick(
                    "Не удалось проверить ключ контекста в МоёмСкладе. Повторите позже.",
                    "The context key could not be checked with MoySklad. Try again later.",
                )
                .into(),
            ),
            PageError::StoreUnavailable { .. } => (
                pick("Сервер временно недоступен", "Temporarily unavailable"),
                pick(
                    "Хранилище сервера лояльности недоступно. Повторите через несколько секунд.",
                    "The loyalty server's store is unavailable. Try again in a few seconds.",
                )
                .into(),
            ),
        }
    }
}

/// The HTML answer for a settings page refusal, linking the page's `stylesheet`.
pub fn respond_page(err: &PageError, lang: Lang, stylesheet: &str) -> Response<Bytes> {
    let (title, message) = err.texts(lang);
    let body = format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"{css}\"></head>\
         <body><main class=\"page\"><div class=\"notice error\" role=\"alert\"><h1>{title}</h1>\
         <p>{message}</p></div></main></body></html>\n",
        lang = lang.code(),
        title = escape(title),
        message = escape(&message),
        css = escape(stylesheet),
    );
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = err.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let PageError::MethodNotAllowed { allowed } = err
        && let Ok(value) = HeaderValue::from_str(&method_list(allowed))
    {
        headers.insert(header::ALLOW, value);
    }
    if let PageError::TooManyOpens { retry_after_secs }
    | PageError::TooManyPosts { retry_after_secs } = err
    {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_errors_are_html_in_both_languages() {
        let err = PageError::ForeignOrigin {
            origin: "<evil>".into(),
        };
        let ru = respond_page(&err, Lang::Ru, "/s.css?a=\"b");
        assert_eq!(ru.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            ru.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let text = String::from_utf8(ru.body().to_vec()).unwrap();
        assert!(text.contains("Запрос отклонён"), "{text}");
        assert!(text.contains("href=\"/s.css?a=&quot;b\""), "{text}");
        assert!(!text.contains("<evil>"), "{text}");
        let en = respond_page(&PageError::ContextRefused, Lang::En, "/s.css");
        let text = String::from_utf8(en.body().to_vec()).unwrap();
        assert!(text.contains("The link has expired"), "{text}");
        assert!(text.contains("<html lang=\"en\">"), "{text}");
        let store = respond_page(
            &PageError::StoreUnavailable {
                detail: "secret path".into(),
            },
            Lang::En,
            "/s.css",
        );
        assert_eq!(store.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!String::from_utf8_lossy(store.body()).contains("secret path"));
    }
}

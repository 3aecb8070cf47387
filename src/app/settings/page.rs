//! The settings page's HTML. Plain server-side rendering: fixed texts from [`super::i18n`], every
//! other value through [`escape`]. No inline script or style (the CSP forbids them): the page
//! links `settings.css` and `settings.js` from the bridge itself.

use std::fmt::Write;

use super::catalog::VendorChoice;
use super::html::escape;
use super::i18n::{Lang, Texts};
use crate::app::recent::{AppFailure, FailureSource};
use crate::store::{AppState, AppTenant};

/// A phone the check uses when the admin gives none: well formed, unlikely to be a customer.
pub const DEFAULT_TEST_PHONE: &str = "+79000000000";

/// Where the page's own resources are.
pub struct Paths<'a> {
    pub page: &'a str,
    pub style: &'a str,
    pub script: &'a str,
}

/// The outcome of an action, shown above the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub success: bool,
    pub text: String,
    /// A second line (the vendor's or MoySklad's own words).
    pub detail: Option<String>,
}

impl Notice {
    pub fn success(text: impl Into<String>) -> Notice {
        Notice {
            success: true,
            text: text.into(),
            detail: None,
        }
    }

    pub fn error(text: impl Into<String>, detail: Option<String>) -> Notice {
        Notice {
            success: false,
            text: text.into(),
            detail,
        }
    }
}

/// What the form shows (never a credential value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormState {
    pub mapping: Option<String>,
    pub external_search: bool,
    pub test_phone: String,
}

pub struct View<'a> {
    pub lang: Lang,
    pub paths: Paths<'a>,
    pub session_id: &'a str,
    pub csrf: &'a str,
    pub employee: &'a str,
    pub admin: bool,
    pub account_id: &'a str,
    pub tenant: Option<&'a AppTenant>,
    /// Names of the credentials stored for the tenant's current mapping.
    pub stored_credentials: &'a [String],
    pub choices: &'a [VendorChoice],
    pub form: FormState,
    pub notice: Option<Notice>,
    /// The account's recent failures, the one last seen first.
    pub recent: &'a [AppFailure],
    pub idle_minutes: u64,
}

/// MoySklad's name of a state, and ours for people.
fn state_names(
    t: &Texts,
    tenant: Option<&AppTenant>,
) -> (&'static str, &'static str, &'static str) {
    match tenant.map(|t| t.state) {
        Some(AppState::SettingsRequired) => {
            ("SettingsRequired", t.state_settings_required, "pending")
        }
        Some(AppState::Activated) => ("Activated", t.state_activated, "ok"),
        Some(AppState::Suspended) => ("Suspended", t.state_suspended, "off"),
        Some(AppState::Uninstalled) => ("Uninstalled", t.state_uninstalled, "off"),
        None => ("—", t.state_not_installed, "off"),
    }
}

pub fn render(view: &View<'_>) -> String {
    let t = view.lang.texts();
    let mut out = String::with_capacity(8 * 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"{css}\">\
         <script src=\"{js}\" defer></script></head>\n<body><main class=\"page\">\n",
        lang = view.lang.code(),
        title = escape(t.title),
        css = escape(view.paths.style),
        js = escape(view.paths.script),
    );
    let account_name = view
        .tenant
        .map(|tenant| tenant.account_name.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or(view.account_id);
    let _ = writeln!(
        out,
        "<header><h1>{heading}</h1><p class=\"meta\">{account}: <b id=\"account\">{account_name}</b>\
         <span class=\"sep\">·</span>{employee}: <span id=\"employee\">{employee_name}</span></p></header>",
        heading = escape(t.heading),
        account = escape(t.account),
        account_name = escape(account_name),
        employee = escape(t.employee),
        employee_name = escape(view.employee),
    );
    status_card(&mut out, t, view);
    if let Some(notice) = &view.notice {
        let _ = write!(
            out,
            "<div id=\"notice\" class=\"notice {kind}\" role=\"{role}\"><p>{text}</p>",
            kind = if notice.success { "success" } else { "error" },
            role = if notice.success { "status" } else { "alert" },
            text = escape(&notice.text),
        );
        if let Some(detail) = &notice.detail {
            let _ = write!(out, "<p class=\"detail\">{}</p>", escape(detail));
        }
        out.push_str("</div>\n");
    }
    let active = view.tenant.is_some_and(|tenant| tenant.state.is_active());
    if !active {
        let text = match view.tenant.map(|tenant| tenant.state) {
            Some(AppState::Suspended) => t.suspended,
            _ => t.not_installed,
        };
        let _ = writeln!(
            out,
            "<div id=\"inactive\" class=\"notice info\"><p>{}</p></div>",
            escape(text)
        );
    } else if !view.admin {
        let _ = writeln!(
            out,
            "<div id=\"read-only\" class=\"notice info\"><p>{}</p></div>",
            escape(t.read_only)
        );
    } else if view.choices.is_empty() {
        let _ = writeln!(
            out,
            "<div id=\"no-vendors\" class=\"notice error\"><p>{}</p></div>",
            escape(t.no_vendors)
        );
    } else {
        form(&mut out, t, view);
    }
    recent_card(&mut out, t, view);
    let _ = write!(
        out,
        "<footer><p>{}</p></footer>\n</main></body></html>\n",
        escape(
            &t.session_note
                .replace("{minutes}", &view.idle_minutes.to_string())
        )
    );
    out
}

fn status_card(out: &mut String, t: &Texts, view: &View<'_>) {
    let (moysklad_name, our_name, class) = state_names(t, view.tenant);
    let _ = write!(
        out,
        "<section class=\"card status\"><dl>\
         <dt>{state}</dt><dd><span id=\"state\" class=\"badge {class}\" data-state=\"{moysklad_name}\">{our_name}</span> \
         <code>{moysklad_name}</code></dd>",
        state = escape(t.state),
        our_name = escape(our_name),
    );
    if let Some(tenant) = view.tenant {
        if let Some(mapping) = &tenant.mapping {
            let search = if tenant.external_search {
                t.search_external
            } else {
                t.search_internal
            };
            let _ = write!(
                out,
                "<dt>{vendor}</dt><dd id=\"connected-vendor\">{mapping}</dd><dt>{search_label}</dt><dd>{search}</dd>",
                vendor = escape(t.connected_vendor),
                mapping = escape(mapping),
                search_label = escape(t.search),
                search = escape(search),
            );
        }
        if let Some(note) = &tenant.vendor_note {
            let _ = write!(
                out,
                "<dt>{label}</dt><dd id=\"moysklad-note\">{note}</dd>",
                label = escape(t.moysklad_answer),
                note = escape(note),
            );
        }
    }
    out.push_str("</dl></section>\n");
}

fn form(out: &mut String, t: &Texts, view: &View<'_>) {
    let chosen = view
        .form
        .mapping
        .as_deref()
        .filter(|m| view.choices.iter().any(|c| c.name == *m))
        .or_else(|| view.choices.first().map(|c| c.name.as_str()))
        .unwrap_or("");
    let _ = write!(
        out,
        "<form id=\"settings-form\" class=\"card\" method=\"post\" action=\"{action}\" autocomplete=\"off\">\
         <input type=\"hidden\" name=\"session\" value=\"{session}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"lang\" value=\"{lang}\">\n\
         <div class=\"field\"><label for=\"mapping\">{vendor}</label><select id=\"mapping\" name=\"mapping\">",
        action = escape(view.paths.page),
        session = escape(view.session_id),
        csrf = escape(view.csrf),
        lang = view.lang.code(),
        vendor = escape(t.vendor),
    );
    for choice in view.choices {
        let label = match &choice.description {
            Some(d) if !d.is_empty() => format!("{} — {d}", choice.title),
            _ => choice.title.clone(),
        };
        let _ = write!(
            out,
            "<option value=\"{value}\"{selected}>{label}</option>",
            value = escape(&choice.name),
            selected = if choice.name == chosen {
                " selected"
            } else {
                ""
            },
            label = escape(&label),
        );
    }
    out.push_str("</select></div>\n");
    let stored_mapping = view.tenant.and_then(|tenant| tenant.mapping.as_deref());
    for choice in view.choices {
        let _ = write!(
            out,
            "<fieldset class=\"vendor\" data-mapping=\"{name}\"><legend>{legend}</legend>\
             <p class=\"hint\">{api}: <code>{url}</code></p>",
            name = escape(&choice.name),
            legend = escape(t.credentials),
            api = escape(t.vendor_api),
            url = escape(&choice.base_url),
        );
        for credential in &choice.credentials {
            let stored = stored_mapping == Some(choice.name.as_str())
                && view.stored_credentials.iter().any(|c| c == credential);
            let id = format!("cred-{}-{credential}", choice.name);
            let _ = write!(
                out,
                "<div class=\"field\"><label for=\"{id}\"><code>{credential}</code>{badge}</label>\
                 <input type=\"password\" id=\"{id}\" name=\"cred.{name}.{credential}\" \
                 placeholder=\"{placeholder}\" autocomplete=\"new-password\" maxlength=\"1024\"></div>",
                id = escape(&id),
                credential = escape(credential),
                badge = if stored {
                    " <span class=\"set\">✓</span>"
                } else {
                    ""
                },
                name = escape(&choice.name),
                placeholder = escape(if stored {
                    t.credential_set
                } else {
                    t.credential_required
                }),
            );
        }
        out.push_str("</fieldset>\n");
    }
    let checked = |on: bool| if on { " checked" } else { "" };
    let _ = write!(
        out,
        "<fieldset class=\"search\"><legend>{search}</legend>\
         <label class=\"choice\"><input type=\"radio\" id=\"search-internal\" name=\"external_search\" value=\"false\"{internal_checked}> {internal}</label>\
         <label class=\"choice\"><input type=\"radio\" id=\"search-external\" name=\"external_search\" value=\"true\"{external_checked}> {external}</label>\
         </fieldset>\n\
         <div class=\"field\"><label for=\"test_phone\">{phone_label}</label>\
         <input type=\"tel\" id=\"test_phone\" name=\"test_phone\" value=\"{phone}\" maxlength=\"32\">\
         <p class=\"hint\">{phone_hint}</p></div>\n\
         <div class=\"actions\"><button type=\"submit\" id=\"check\" name=\"action\" value=\"check\" class=\"secondary\">{check}</button>\
         <button type=\"submit\" id=\"save\" name=\"action\" value=\"save\" class=\"primary\">{save}</button></div>\
         <p class=\"hint\">{save_hint}</p></form>\n",
        search = escape(t.search),
        internal_checked = checked(!view.form.external_search),
        internal = escape(t.search_internal),
        external_checked = checked(view.form.external_search),
        external = escape(t.search_external),
        phone_label = escape(t.test_phone),
        phone = escape(&view.form.test_phone),
        phone_hint = escape(t.test_phone_hint),
        check = escape(t.check),
        save = escape(t.save),
        save_hint = escape(t.save_hint),
    );
}

/// A store time as the page shows it (UTC, to the second).
fn utc_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn recent_card(out: &mut String, t: &Texts, view: &View<'_>) {
    let _ = write!(out, "<section class=\"card\"><h2>{}</h2>", escape(t.recent));
    if view.recent.is_empty() {
        let _ = write!(
            out,
            "<p id=\"recent-none\" class=\"hint\">{}</p>",
            escape(t.recent_none)
        );
    } else {
        out.push_str("<ul id=\"recent\" class=\"recent\">");
        for failure in view.recent {
            let source = match failure.source {
                FailureSource::VendorCheck => t.source_vendor_check,
                FailureSource::Moysklad => t.source_moysklad,
                FailureSource::LoyaltyApi => t.source_loyalty_api,
            };
            let _ = write!(
                out,
                "<li><time>{when}</time> <span class=\"source\">{source}</span> {text}",
                when = utc_time(failure.last_ms),
                source = escape(source),
                text = escape(&failure.text),
            );
            if failure.times > 1 {
                let repeated = t
                    .recent_repeated
                    .replace("{n}", &failure.times.to_string())
                    .replace("{first}", &utc_time(failure.first_ms));
                let _ = write!(out, " <span class=\"times\">{}</span>", escape(&repeated));
            }
            out.push_str("</li>");
        }
        let _ = write!(out, "</ul><p class=\"hint\">{}</p>", escape(t.recent_times));
    }
    out.push_str("</section>\n");
}

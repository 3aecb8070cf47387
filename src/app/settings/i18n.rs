//! The settings page's two languages. MoySklad passes the employee's `userLocale` (`ru_RU` or
//! `en_US`); anything else is Russian, MoySklad's default.

/// The language a page is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Ru,
    En,
}

impl Lang {
    /// From MoySklad's `userLocale` (`en_US`, `en`, … → English; everything else Russian).
    pub fn from_locale(locale: Option<&str>) -> Lang {
        match locale {
            Some(l) if l.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("en")) => Lang::En,
            _ => Lang::Ru,
        }
    }

    /// The `lang` attribute of the page.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ru => "ru",
            Lang::En => "en",
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::Ru => &RU,
            Lang::En => &EN,
        }
    }
}

/// Every fixed text of the page. `{…}` marks where the caller inserts a value.
pub struct Texts {
    pub title: &'static str,
    pub heading: &'static str,
    pub account: &'static str,
    pub employee: &'static str,
    pub state: &'static str,
    pub state_settings_required: &'static str,
    pub state_activated: &'static str,
    pub state_suspended: &'static str,
    pub state_uninstalled: &'static str,
    pub state_not_installed: &'static str,
    pub moysklad_answer: &'static str,
    pub connected_vendor: &'static str,
    pub read_only: &'static str,
    pub not_installed: &'static str,
    pub suspended: &'static str,
    pub no_vendors: &'static str,
    pub vendor: &'static str,
    pub vendor_api: &'static str,
    pub credentials: &'static str,
    pub credential_set: &'static str,
    pub credential_required: &'static str,
    pub search: &'static str,
    pub search_internal: &'static str,
    pub search_external: &'static str,
    pub test_phone: &'static str,
    pub test_phone_hint: &'static str,
    pub check: &'static str,
    pub save: &'static str,
    pub save_hint: &'static str,
    pub recent: &'static str,
    pub recent_none: &'static str,
    pub recent_times: &'static str,
    /// After a failure that happened more than once: `{n}` times, first at `{first}`.
    pub recent_repeated: &'static str,
    pub source_vendor_check: &'static str,
    pub source_moysklad: &'static str,
    pub source_loyalty_api: &'static str,
    pub session_note: &'static str,
    /// `{n}` customers found for `{phone}`.
    pub check_ok: &'static str,
    pub check_failed: &'static str,
    pub saved: &'static str,
    pub moysklad_refused: &'static str,
    pub not_connected_yet: &'static str,
    /// `{name}` of the credential.
    pub missing_credential: &'static str,
    pub choose_vendor: &'static str,
    pub bad_phone: &'static str,
    pub cannot_change: &'static str,
}

const RU: Texts = Texts {
    title: "Программа лояльности — loyalty-bridge",
    heading: "Подключение программы лояльности",
    account: "Аккаунт",
    employee: "Сотрудник",
    state: "Состояние",
    state_settings_required: "Требуются настройки",
    state_activated: "Подключено",
    state_suspended: "Приостановлено",
    state_uninstalled: "Удалено",
    state_not_installed: "Не установлено",
    moysklad_answer: "Последний ответ МоегоСклада",
    connected_vendor: "Система лояльности",
    read_only: "Настройки может менять только администратор аккаунта МоегоСклада; вы видите их только для чтения.",
    not_installed: "Решение не установлено в этом аккаунте (или удалено). Установите его в МоёмСкладе и откройте настройки снова.",
    suspended: "Решение приостановлено в МоёмСкладе. Настройки сохранены; изменить их можно будет после возобновления.",
    no_vendors: "Нет доступных систем лояльности: администратор сервера не указал адрес API ни для одного файла сопоставления.",
    vendor: "Система лояльности",
    vendor_api: "Адрес API",
    credentials: "Доступ к системе лояльности",
    credential_set: "задано — оставьте пустым, чтобы не менять",
    credential_required: "обязательно",
    search: "Поиск покупателей на кассе",
    search_internal: "В МоёмСкладе",
    search_external: "В системе лояльности",
    test_phone: "Телефон для проверки",
    test_phone_hint: "«Проверить» запрашивает этого покупателя в системе лояльности с указанным доступом; ничего не меняется.",
    check: "Проверить",
    save: "Сохранить и подключить",
    save_hint: "При сохранении доступ проверяется, затем МойСклад получает адрес и ключ программы лояльности.",
    recent: "Последние ошибки",
    recent_none: "Ошибок нет.",
    recent_times: "Время — UTC.",
    recent_repeated: "×{n}, впервые {first}",
    source_vendor_check: "проверка доступа",
    source_moysklad: "МойСклад",
    source_loyalty_api: "LoyaltyAPI",
    session_note: "Сеанс завершается после {minutes} мин бездействия; затем откройте настройки из МоегоСклада снова.",
    check_ok: "Система лояльности приняла доступ. Покупателей с телефоном {phone}: {n}.",
    check_failed: "Система лояльности не приняла проверку",
    saved: "Подключено. МойСклад ответил: {answer}",
    moysklad_refused: "Доступ сохранён, но МойСклад не принял подключение",
    not_connected_yet: "Не сохранено: доступ не прошёл проверку.",
    missing_credential: "Укажите «{name}».",
    choose_vendor: "Выберите систему лояльности.",
    bad_phone: "Телефон для проверки: до 32 символов, цифры, «+», пробелы, скобки и дефисы.",
    cannot_change: "Сейчас настройки изменить нельзя: решение не установлено или приостановлено.",
};

const EN: Texts = Texts {
    title: "Loyalty program — loyalty-bridge",
    heading: "Loyalty program connection",
    account: "Account",
    employee: "Employee",
    state: "State",
    state_settings_required: "Settings required",
    state_activated: "Connected",
    state_suspended: "Suspended",
    state_uninstalled: "Uninstalled",
    state_not_installed: "Not installed",
    moysklad_answer: "MoySklad's last answer",
    connected_vendor: "Loyalty vendor",
    read_only: "Only an administrator of the MoySklad account can change these settings; you see them read-only.",
    not_installed: "The app is not installed on this account (or was uninstalled). Install it in MoySklad and open its settings again.",
    suspended: "The app is suspended in MoySklad. The settings are kept and can be changed once it is resumed.",
    no_vendors: "No loyalty vendor is available: the server's administrator has not set an API address for any mapping file.",
    vendor: "Loyalty vendor",
    vendor_api: "API address",
    credentials: "Vendor credentials",
    credential_set: "set — leave empty to keep",
    credential_required: "required",
    search: "Customer search at the till",
    search_internal: "In MoySklad",
    search_external: "In the loyalty system",
    test_phone: "Phone for the check",
    test_phone_hint: "“Check” looks this customer up at the vendor with the credentials given; nothing is changed.",
    check: "Check",
    save: "Save and connect",
    save_hint: "Saving checks the credentials, then gives MoySklad the loyalty program's address and key.",
    recent: "Recent errors",
    recent_none: "No errors.",
    recent_times: "Times are UTC.",
    recent_repeated: "×{n}, first at {first}",
    source_vendor_check: "credential check",
    source_moysklad: "MoySklad",
    source_loyalty_api: "LoyaltyAPI",
    session_note: "The session ends after {minutes} idle minutes; then open the settings from MoySklad again.",
    check_ok: "The vendor accepted the credentials. Customers with phone {phone}: {n}.",
    check_failed: "The vendor refused the check",
    saved: "Connected. MoySklad answered: {answer}",
    moysklad_refused: "The credentials are stored, but MoySklad did not accept the connection",
    not_connected_yet: "Not saved: the credentials did not pass the check.",
    missing_credential: "Enter “{name}”.",
    choose_vendor: "Choose a loyalty vendor.",
    bad_phone: "Phone for the check: up to 32 characters, digits, “+”, spaces, brackets and dashes.",
    cannot_change: "The settings cannot be changed now: the app is not installed or is suspended.",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_picks_the_language_and_defaults_to_russian() {
        assert_eq!(Lang::from_locale(Some("en_US")), Lang::En);
        assert_eq!(Lang::from_locale(Some("EN")), Lang::En);
        assert_eq!(Lang::from_locale(Some("ru_RU")), Lang::Ru);
        assert_eq!(Lang::from_locale(Some("de_DE")), Lang::Ru);
        assert_eq!(Lang::from_locale(Some("е")), Lang::Ru);
        assert_eq!(Lang::from_locale(None), Lang::Ru);
    }
}

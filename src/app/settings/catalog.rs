//! The vendors an admin can choose on the settings page: the mapping files of
//! `moysklad_app.mappings_dir` that have an API address, each with the credentials it uses.
//!
//! The address comes from `moysklad_app.vendor_base_urls.<name>`, else the file's
//! `[vendor] base_url`; a mapping with neither is not offered. The admin never types an address:
//! on a bridge shared by many merchants that would let any account's admin make the bridge call
//! any host (an internal one included) with whatever it sends.
//!
//! The credentials a mapping uses are the names its expressions read as `.credentials.<name>`
//! (headers, paths, bodies), found by scanning the file's text outside comments; the page shows
//! one field for each.

use std::collections::BTreeMap;
use std::path::Path;

use engine::file::MappingFile;

use crate::config::is_mapping_name;

/// One vendor the page offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorChoice {
    /// The mapping's name: `<mappings_dir>/<name>.toml`.
    pub name: String,
    /// `[vendor] name` of the file.
    pub title: String,
    pub description: Option<String>,
    pub base_url: String,
    /// Credential names, in the order the file first uses them.
    pub credentials: Vec<String>,
}

/// The choices in `dir`, by name. Blocking (reads files): call from a blocking task.
pub fn scan(dir: &Path, base_urls: &BTreeMap<String, String>) -> Vec<VendorChoice> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list moysklad_app.mappings_dir");
            return Vec::new();
        }
    };
    let mut choices: Vec<VendorChoice> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".toml")?
                .to_owned();
            if !is_mapping_name(&name) {
                return None;
            }
            let text = std::fs::read_to_string(&path).ok()?;
            choice(name, &text, base_urls)
        })
        .collect();
    choices.sort_by(|a, b| a.name.cmp(&b.name));
    choices
}

fn choice(name: String, text: &str, base_urls: &BTreeMap<String, String>) -> Option<VendorChoice> {
    let file: MappingFile = match toml::from_str(text) {
        Ok(file) => file,
        Err(e) => {
            tracing::warn!(mapping = %name, error = %e, "mapping file not offered on the settings page");
            return None;
        }
    };
    let base_url = base_urls
        .get(&name)
        .cloned()
        .or(file.vendor.base_url)?
        .trim_end_matches('/')
        .to_owned();
    Some(VendorChoice {
        name,
        title: file.vendor.name,
        description: file.vendor.description,
        base_url,
        credentials: credential_names(text),
    })
}

/// Every `.credentials.<name>` the text reads, outside `#` comment lines.
pub fn credential_names(text: &str) -> Vec<String> {
    const MARK: &str = ".credentials.";
    let mut names: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find(MARK) {
            let after = &rest[at + MARK.len()..];
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..end];
            if !name.is_empty() && !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
            rest = &after[end..];
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mappings_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")
    }

    #[test]
    fn the_shipped_mappings_are_offered_with_their_credentials() {
        let choices = scan(&mappings_dir(), &BTreeMap::new());
        let by_name = |n: &str| choices.iter().find(|c| c.name == n).unwrap();
        assert_eq!(by_name("maxma").credentials, ["api_key"]);
        assert_eq!(by_name("maxma").base_url, "https://api.maxma.com");
        assert_eq!(by_name("uds").credentials, ["company_id", "api_key"]);
        assert_eq!(by_name("premiumbonus").credentials, ["token"]);
        let names: Vec<&str> = choices.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["maxma", "premiumbonus", "uds"]);
    }

    #[test]
    fn configured_addresses_win_and_mappings_without_one_are_not_offered() {
        let mut urls = BTreeMap::new();
        urls.insert("maxma".to_string(), "http://127.0.0.1:9081/".to_string());
        let choices = scan(&mappings_dir(), &urls);
        let maxma = choices.iter().find(|c| c.name == "maxma").unwrap();
        assert_eq!(maxma.base_url, "http://127.0.0.1:9081");
        let text = "[vendor]\nname = \"x\"\n";
        assert_eq!(choice("x".into(), text, &BTreeMap::new()), None);
    }

    #[test]
    fn credential_names_skip_comments_and_repeat_once() {
        let text = "# .credentials.not_this\nA = \"{.credentials.a}\"\nB = '(.credentials.b + .credentials.a)'\n";
        assert_eq!(credential_names(text), ["a", "b"]);
    }
}

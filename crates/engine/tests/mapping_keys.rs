//! docs/mapping-keys.md against the loader itself: for each section of a mapping file, the keys
//! its table lists are exactly the keys the deserializer accepts, the keys it marks `required`
//! are exactly those the deserializer cannot do without, and every one-line example loads.
//!
//! The accepted keys come from the loader's own refusal: a minimal valid file with a bogus key
//! added fails with serde's "unknown field `…`, expected one of `a`, `b`, …".
//!
//! A key added to `crates/engine/src/file.rs` fails here until the page has its row; the
//! message names the section, the key and the table to add the row to.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use engine::file::MappingFile;

const PAGE: &str = "docs/mapping-keys.md";

/// A key no section has: the loader must refuse it and list the section's keys instead.
const BOGUS: &str = "bogus_key_for_the_keys_page";

/// One section of a mapping file: where its keys go in a minimal file, and what it needs.
struct Section {
    /// The page's table for it follows the line `<!-- keys: <id> -->`.
    id: &'static str,
    /// Minimal valid files, each ending where the section's keys go: one per place the section
    /// appears in a mapping file (all must accept the same keys).
    places: Vec<String>,
    /// The lines of a minimal section, one per key the loader requires.
    required: &'static [&'static str],
    /// A table of names the author chooses (`recall`): any key is accepted.
    open: bool,
}

fn sections() -> Vec<Section> {
    let vendor = "vendor.name = \"v\"\n";
    let op = |op: &str, header: &str| format!("{vendor}[{header}ops.\"{op}\"");
    let step = format!(
        "{}.steps]]\nname = \"calc\"\nmethod = \"POST\"\npath = \"/calc\"\n",
        op("retaildemand.recalc", "[")
    );
    let step_part = |name: &str| format!("{step}[ops.\"retaildemand.recalc\".steps.{name}]\n");
    let example_head = format!(
        "{vendor}[[examples]]\nname = \"e\"\nop = \"retaildemand.recalc\"\nrequest = '{{}}'\n"
    );
    let example = format!("{example_head}expect.status = 200\n");
    let section = |id, places: Vec<String>, required, open| Section {
        id,
        places,
        required,
        open,
    };
    vec![
        section(
            "top",
            vec![String::new()],
            &["vendor = { name = \"v\" }"],
            false,
        ),
        section(
            "vendor",
            vec!["[vendor]\n".into()],
            &["name = \"v\""],
            false,
        ),
        section(
            "op",
            vec![format!("{}]\n", op("retaildemand.create", ""))],
            &[],
            false,
        ),
        section(
            "recall",
            vec![format!("{}.recall]\n", op("retaildemand.create", ""))],
            &[],
            true,
        ),
        section(
            "rule",
            vec![
                format!("{}.checks]]\n", op("retaildemand.recalc", "[")),
                format!("{}.errors]]\n", op("retaildemand.recalc", "[")),
                format!("{vendor}[[errors]]\n"),
            ],
            &["when = 'true'"],
            false,
        ),
        section(
            "error",
            vec![
                format!(
                    "{}.checks]]\nwhen = 'true'\n[ops.\"retaildemand.recalc\".checks.error]\n",
                    op("retaildemand.recalc", "[")
                ),
                format!("{vendor}[[errors]]\nwhen = 'true'\n[errors.error]\n"),
                format!(
                    "{step}[[ops.\"retaildemand.recalc\".steps.verify]]\nthat = 'true'\n[ops.\"retaildemand.recalc\".steps.verify.error]\n"
                ),
            ],
            &[
                "status = 409",
                "code = 1",
                "error = \"e\"",
                "message = \"m\"",
            ],
            false,
        ),
        section(
            "step",
            vec![format!("{}.steps]]\n", op("retaildemand.recalc", "["))],
            &["name = \"calc\"", "method = \"POST\"", "path = \"/calc\""],
            false,
        ),
        section(
            "verify",
            vec![format!(
                "{step}[[ops.\"retaildemand.recalc\".steps.verify]]\n"
            )],
            &[
                "that = 'true'",
                "error = { status = 409, code = 1, error = \"e\", message = \"m\" }",
            ],
            false,
        ),
        section(
            "cache",
            vec![step_part("cache")],
            &["key = \"k\"", "ttl_secs = 1"],
            false,
        ),
        section(
            "remember",
            vec![step_part("remember")],
            &["key = \"k\"", "value = '.'", "ttl_secs = 1"],
            false,
        ),
        section(
            "compensate",
            vec![step_part("compensate")],
            &["method = \"POST\"", "path = \"/undo\""],
            false,
        ),
        section(
            "response",
            vec![format!("{}.response]\n", op("retaildemand.recalc", ""))],
            &["body = '{}'"],
            false,
        ),
        section(
            "example",
            vec![format!("{vendor}[[examples]]\n")],
            &[
                "name = \"e\"",
                "op = \"retaildemand.recalc\"",
                "request = '{}'",
                "expect.status = 200",
            ],
            false,
        ),
        section(
            "upstream",
            vec![format!("{example}[examples.upstream.calc]\n")],
            &[],
            false,
        ),
        section(
            "expect_call",
            vec![format!("{example}[[examples.expect_calls]]\n")],
            &["step = \"calc\"", "method = \"POST\"", "path = \"/calc\""],
            false,
        ),
        section(
            "expect",
            vec![format!("{example_head}[examples.expect]\n")],
            &["status = 200"],
            false,
        ),
    ]
}

/// One row of a section's table.
struct Row {
    key: String,
    /// The default column: `required`, or what applies when the key is absent.
    default: String,
    /// The example column: one TOML line, as written inside the section.
    example: String,
}

/// The key a TOML line sets: `expect.status = 200` sets `expect`.
fn key_of(line: &str) -> &str {
    let end = line.find([' ', '=', '.']).unwrap_or(line.len());
    &line[..end]
}

fn load(text: &str) -> Result<MappingFile, String> {
    toml::from_str::<MappingFile>(text).map_err(|e| e.to_string())
}

/// `place` with the section's lines.
fn file(place: &str, lines: &[&str]) -> String {
    let mut text = place.to_string();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// The keys serde lists after refusing `BOGUS`: "unknown field `x`, expected one of `a`, `b`"
/// (also "expected `a`" and "expected `a` or `b`"); `Err` with the loader's message otherwise.
fn accepted_keys(error: &str) -> Result<BTreeSet<String>, String> {
    let line = error
        .lines()
        .find(|l| l.contains(&format!("unknown field `{BOGUS}`")))
        .ok_or_else(|| error.to_string())?;
    let expected = line
        .split_once(", expected ")
        .map(|(_, rest)| rest)
        .unwrap_or("");
    Ok(expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect())
}

/// Every `<!-- keys: id -->` table of the page, by id; malformed rows go to `problems`.
fn tables(page: &str, problems: &mut Vec<String>) -> BTreeMap<String, Vec<Row>> {
    let mut tables = BTreeMap::new();
    let mut lines = page.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(id) = line
            .trim()
            .strip_prefix("<!-- keys:")
            .and_then(|rest| rest.strip_suffix("-->"))
        else {
            continue;
        };
        let id = id.trim().to_string();
        let header: Vec<String> = lines.next().map(cells).unwrap_or_default();
        if header != ["key", "type", "default", "example"] {
            problems.push(format!(
                "{PAGE}: the table after `<!-- keys: {id} -->` must start with the header \
                 | key | type | default | example | (got {header:?})"
            ));
            continue;
        }
        lines.next(); // |---|---|---|---|
        let mut rows = Vec::new();
        while let Some(line) = lines.next_if(|l| l.trim_start().starts_with('|')) {
            let cells = cells(line);
            let code = |cell: &str| {
                cell.strip_prefix('`')
                    .and_then(|c| c.strip_suffix('`'))
                    .map(str::to_string)
            };
            match (
                cells.len(),
                code(&cells[0]),
                cells.get(3).and_then(|c| code(c)),
            ) {
                (4, Some(key), Some(example)) => rows.push(Row {
                    key,
                    default: cells[2].clone(),
                    example,
                }),
                _ => problems.push(format!(
                    "{PAGE}, table `{id}`: the row {line:?} must be \
                     | `key` | type | default (or required) | `one TOML line` |"
                )),
            }
        }
        if tables.insert(id.clone(), rows).is_some() {
            problems.push(format!(
                "{PAGE}: two tables are marked `<!-- keys: {id} -->`"
            ));
        }
    }
    tables
}

/// The cells of a table row, `\|` read as `|`.
fn cells(line: &str) -> Vec<String> {
    let line = line.trim().trim_start_matches('|');
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cell).trim().to_string()),
            c => cell.push(c),
        }
    }
    if !cell.trim().is_empty() {
        cells.push(cell.trim().to_string());
    }
    cells
}

fn check_section(section: &Section, rows: &[Row], problems: &mut Vec<String>) {
    let id = section.id;
    let table = format!("{PAGE}, table `{id}` (after `<!-- keys: {id} -->`)");
    let listed: BTreeSet<String> = rows.iter().map(|r| r.key.clone()).collect();
    for place in &section.places {
        let minimal = file(place, section.required);
        if let Err(e) = load(&minimal) {
            problems.push(format!(
                "section `{id}`: the test's minimal file no longer loads (update `required` in \
                 {}):\n{minimal}\n{e}",
                file!()
            ));
            continue;
        }
        // The keys the loader accepts here.
        let bogus = format!("{BOGUS} = \"x\"");
        let with_bogus = file(place, &[section.required, &[bogus.as_str()]].concat());
        match (section.open, load(&with_bogus)) {
            (true, Ok(_)) => {
                if listed.len() != 1 || !listed.iter().all(|k| k.starts_with('<')) {
                    problems.push(format!(
                        "{table}: any name is a key of section `{id}`: give it one row, `<name>`"
                    ));
                }
            }
            (true, Err(e)) => problems.push(format!(
                "section `{id}` no longer takes any name as a key; list its keys in {table} \
                 and make it a fixed section in {}: {e}",
                file!()
            )),
            (false, Ok(_)) => problems.push(format!(
                "section `{id}` accepts the unknown key `{BOGUS}`: its struct in \
                 crates/engine/src/file.rs lost #[serde(deny_unknown_fields)]"
            )),
            (false, Err(e)) => match accepted_keys(&e) {
                Err(e) => problems.push(format!(
                    "section `{id}`: the loader refused the bogus key, but not as an unknown \
                     field:\n{with_bogus}\n{e}"
                )),
                Ok(accepted) => {
                    for key in accepted.difference(&listed) {
                        problems.push(format!(
                            "{table}: the loader accepts `{key}` in section `{id}`, but the \
                             table has no row for it; add \
                             | `{key}` | <type> | <default, or required> | `{key} = <example>` |"
                        ));
                    }
                    for key in listed.difference(&accepted) {
                        problems.push(format!(
                            "{table}: the row `{key}` names a key the loader does not accept in \
                             section `{id}` (accepted: {accepted:?}); remove or rename the row"
                        ));
                    }
                }
            },
        }
        // The keys the loader requires: a minimal section without one of them fails.
        let mut required = BTreeSet::new();
        for line in section.required {
            let key = key_of(line);
            let others: Vec<&str> = section
                .required
                .iter()
                .copied()
                .filter(|l| l != line)
                .collect();
            match load(&file(place, &others)) {
                Err(e) if e.contains(&format!("missing field `{key}`")) => {
                    required.insert(key.to_string());
                }
                Err(e) => problems.push(format!(
                    "section `{id}`: without `{line}` the minimal file fails, but not for the \
                     missing `{key}`: {e}"
                )),
                Ok(_) => {} // optional now: the comparison below reports it
            }
        }
        let marked: BTreeSet<String> = rows
            .iter()
            .filter(|r| r.default == "required")
            .map(|r| r.key.clone())
            .collect();
        for key in required.difference(&marked) {
            problems.push(format!(
                "{table}: the loader requires `{key}`; its default cell must say `required`"
            ));
        }
        for key in marked.difference(&required) {
            problems.push(format!(
                "{table}: the row `{key}` says `required`, but a section loads without it; \
                 give its default"
            ));
        }
        // Every example loads, in place of the minimal section's own line for its key.
        for row in rows {
            let key = key_of(&row.example);
            if !section.open && key != row.key {
                problems.push(format!(
                    "{table}: the example of `{}` sets `{key}`: {}",
                    row.key, row.example
                ));
                continue;
            }
            let mut lines: Vec<&str> = section
                .required
                .iter()
                .copied()
                .filter(|l| key_of(l) != key)
                .collect();
            lines.push(&row.example);
            if let Err(e) = load(&file(place, &lines)) {
                problems.push(format!(
                    "{table}: the example of `{}` does not load: {}\n{e}",
                    row.key, row.example
                ));
            }
        }
    }
}

#[test]
fn the_keys_page_lists_every_key_the_loader_accepts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let page = std::fs::read_to_string(root.join(PAGE)).expect("the keys page");
    let mut problems = Vec::new();
    let mut tables = tables(&page, &mut problems);
    for section in sections() {
        match tables.remove(section.id) {
            Some(rows) => check_section(&section, &rows, &mut problems),
            None => problems.push(format!(
                "{PAGE} has no table for section `{}`: add one after `<!-- keys: {} -->`",
                section.id, section.id
            )),
        }
    }
    for id in tables.keys() {
        problems.push(format!(
            "{PAGE}: the table `<!-- keys: {id} -->` is no section this test knows; add it to \
             sections() in {}",
            file!()
        ));
    }
    // A section found in several places reports the same drift once.
    let mut seen = BTreeSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    assert!(
        problems.is_empty(),
        "{PAGE} and crates/engine/src/file.rs disagree:\n\n{}",
        problems.join("\n\n")
    );
}

/// The checks above can fail: a page missing a key, listing one too many, or marking the
/// wrong key required is reported, naming the section and the key.
#[test]
fn a_drifted_page_is_reported_by_section_and_key() {
    let rows = |keys: &[(&str, &str)]| -> Vec<Row> {
        keys.iter()
            .map(|(key, default)| Row {
                key: key.to_string(),
                default: default.to_string(),
                example: format!("{key} = 5000"),
            })
            .collect()
    };
    let cache = sections().into_iter().find(|s| s.id == "cache").unwrap();
    let mut problems = Vec::new();
    // `key` missing, `ttl` not a key, `ttl_secs` not marked required.
    check_section(
        &cache,
        &rows(&[("ttl", "none"), ("ttl_secs", "none")]),
        &mut problems,
    );
    let text = problems.join("\n");
    assert!(
        text.contains("the loader accepts `key` in section `cache`"),
        "{text}"
    );
    assert!(
        text.contains("the row `ttl` names a key the loader does not accept"),
        "{text}"
    );
    assert!(text.contains("the loader requires `ttl_secs`"), "{text}");
    assert!(
        text.contains("the example of `ttl` does not load"),
        "{text}"
    );
}

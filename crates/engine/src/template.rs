//! String templates for paths, query values and headers: literal text with `{jq}` holes.
//! `"/operations/{.steps.sale.body.id}/refund"`; `{{` and `}}` are literal braces.
//!
//! Each hole is encoded for where it lands: a path segment or a query component is
//! percent-encoded so that only unreserved characters stay as they are (`+` → `%2B`, space →
//! `%20`), which is the exact encoding vendors such as UDS require; headers are inserted as is.
//! A path hole that renders nothing, `.` or `..` is an error: it would call another resource.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use crate::expr::{EvalError, Expr};

/// RFC 3986 unreserved characters are left alone; everything else is encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Inserted text is percent-encoded as one URL component; literal text is kept (a path).
    /// A hole may not render an empty text or a dot segment.
    Component,
    /// Everything, literal text too, is percent-encoded as one component (a query value).
    Query,
    /// Inserted text is used verbatim (headers).
    Verbatim,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Hole(Expr),
}

#[derive(Debug)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, String> {
        Template::parse_with(source, "")
    }

    /// Parses a template whose holes may use the jq definitions `defs`.
    pub fn parse_with(source: &str, defs: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '}' => {
                    return Err(format!(
                        "unmatched `}}` at byte {i} (write `}}}}` for a literal brace)"
                    ));
                }
                '{' => {
                    let end = hole_end(source, i + 1)
                        .ok_or_else(|| format!("unclosed `{{` at byte {i}"))?;
                    let expr = Expr::compile_with(defs, &source[i + 1..end])
                        .map_err(|e| format!("in `{{{}}}`: {e}", &source[i + 1..end]))?;
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Hole(expr));
                    while chars.peek().is_some_and(|&(j, _)| j <= end) {
                        chars.next();
                    }
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    /// The top-level keys of its input the holes can read; `None` when that is not known.
    pub fn input_keys(&self) -> Option<Vec<String>> {
        let mut keys = Vec::new();
        for part in &self.parts {
            if let Part::Hole(expr) = part {
                keys.extend(expr.input_keys()?);
            }
        }
        Some(keys)
    }

    /// What of its input the template may look at (`need.rs`); `None` when not known.
    pub fn input_needs(&self) -> Option<crate::need::Need> {
        let mut need = crate::need::Need::kind();
        for part in &self.parts {
            if let Part::Hole(expr) = part {
                need.merge(expr.input_needs()?);
            }
        }
        Some(need)
    }

    /// Renders the template; a hole yielding an object or array is an error.
    pub fn render(&self, input: &Value, encoding: Encoding) -> Result<String, EvalError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) if encoding == Encoding::Query => {
                    out.extend(utf8_percent_encode(t, COMPONENT))
                }
                Part::Text(t) => out.push_str(t),
                Part::Hole(expr) => {
                    let text = scalar_text(&expr.eval(input)?).ok_or_else(|| {
                        EvalError(format!("`{}` is not a string or number", expr.source()))
                    })?;
                    match encoding {
                        Encoding::Component => {
                            if let Some(why) = steps_out_of_its_segment(&text) {
                                return Err(EvalError(format!(
                                    "`{}` gave {text:?} in a path: {why}",
                                    expr.source()
                                )));
                            }
                            out.extend(utf8_percent_encode(&text, COMPONENT))
                        }
                        Encoding::Query => out.extend(utf8_percent_encode(&text, COMPONENT)),
                        Encoding::Verbatim => out.push_str(&text),
                    }
                }
            }
        }
        Ok(out)
    }

    /// True when the template has no holes (a plain literal).
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }
}

/// Percent-encodes a literal query key the same way as holes.
pub fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// Why a hole's text may not go into a path, if it may not. Empty, it leaves its segment empty
/// (`/operations//refund`, or a lookup of nothing); `.` or `..`, alone or between slashes, is a
/// dot segment, which servers resolve (`/customers/../find` is `/find`). Encoding the dots or
/// slashes is no defence: servers decode `%2E`, and nginx `%2F` too, before resolving.
fn steps_out_of_its_segment(text: &str) -> Option<&'static str> {
    if text.is_empty() {
        return Some("an empty path segment");
    }
    // Most holes are ids without dots: nothing more to look at.
    if !text.contains('.') {
        return None;
    }
    text.split(['/', '\\'])
        .any(|piece| piece == "." || piece == "..")
        .then_some("a dot segment (`.` or `..`) would change the path")
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Index of the `}` closing a hole opened just before `start`, skipping jq strings and nested
/// braces (object literals inside a hole).
fn hole_end(source: &str, start: usize) -> Option<usize> {
    let bytes = source.as_bytes();
    let (mut depth, mut i, mut in_string) = (0usize, start, false);
    while i < bytes.len() {
        match (in_string, bytes[i]) {
            (true, b'\\') => i += 1,
            (true, b'"') => in_string = false,
            (false, b'"') => in_string = true,
            (false, b'{') => depth += 1,
            (false, b'}') if depth == 0 => return Some(i),
            (false, b'}') => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, input: Value, enc: Encoding) -> String {
        Template::parse(src).unwrap().render(&input, enc).unwrap()
    }

    #[test]
    fn literal_and_holes() {
        let input = json!({"id": 42, "phone": "+7 555 123"});
        assert_eq!(
            render(
                "/operations/{.id}/refund",
                input.clone(),
                Encoding::Component
            ),
            "/operations/42/refund"
        );
        assert_eq!(
            render("{.phone}", input.clone(), Encoding::Component),
            "%2B7%20555%20123"
        );
        assert_eq!(
            render("Key {.phone}", input.clone(), Encoding::Verbatim),
            "Key +7 555 123"
        );
        assert!(Template::parse("/plain").unwrap().is_literal());
    }

    #[test]
    fn braces_inside_holes_and_escapes() {
        let input = json!({"a": {"b": "x"}});
        assert_eq!(
            render("{{lit}} {({k: .a.b}).k}", input.clone(), Encoding::Verbatim),
            "{lit} x"
        );
        assert_eq!(render("{\"}\" + .a.b}", input, Encoding::Verbatim), "}x");
    }

    #[test]
    fn a_path_hole_cannot_leave_its_segment() {
        let t = Template::parse("/customers/{.id}/find").unwrap();
        let path = |id: Value| t.render(&json!({ "id": id }), Encoding::Component);
        // Servers resolve dot segments, and decode `%2E` and often `%2F` before they do:
        // encoding is no defence, so the step fails before any call.
        for bad in [
            json!(""),
            json!(null),
            json!("."),
            json!(".."),
            json!("../x"),
            json!("a/../b"),
            json!("a/./b"),
            json!("..\\x"),
            json!("./"),
        ] {
            let err = path(bad.clone()).expect_err(&bad.to_string());
            assert!(err.0.contains("`.id`"), "{bad}: {}", err.0);
        }
        for (fine, rendered) in [
            (json!("a"), "/customers/a/find"),
            (json!(42), "/customers/42/find"),
            (json!("..."), "/customers/.../find"),
            (json!(".a"), "/customers/.a/find"),
            (json!("a..b"), "/customers/a..b/find"),
            (json!("%2e%2e"), "/customers/%252e%252e/find"),
            (json!("a/b"), "/customers/a%2Fb/find"),
        ] {
            assert_eq!(path(fine.clone()).unwrap(), rendered, "{fine}");
        }
        // Not paths: a query value or a header may be anything.
        for encoding in [Encoding::Query, Encoding::Verbatim] {
            let t = Template::parse("{.id}").unwrap();
            assert_eq!(t.render(&json!({"id": ".."}), encoding).unwrap(), "..");
            assert_eq!(t.render(&json!({"id": ""}), encoding).unwrap(), "");
        }
    }

    #[test]
    fn errors_are_explained() {
        assert!(Template::parse("/x/{.a").unwrap_err().contains("unclosed"));
        assert!(Template::parse("/x/}").unwrap_err().contains("unmatched"));
        assert!(Template::parse("/x/{.a +}").unwrap_err().contains("syntax"));
        let t = Template::parse("/{.a}").unwrap();
        assert!(t.render(&json!({"a": [1]}), Encoding::Component).is_err());
    }
}

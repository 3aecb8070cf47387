//! Turning raw bodies and query strings into typed requests, with errors that name the field.
//!
//! JSON is parsed through `serde_path_to_error`, so a bad value is reported with its JSON path
//! (`positions[2].quantity`), and a missing field with the path it should have had.

use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::error::{Error, FieldProblem};

/// Parses a JSON body into `T`; any problem becomes a 400 envelope.
pub fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::MalformedBody {
            reason: "тело запроса пустое".into(),
        });
    }
    // Checked once here: reading from `&str`, serde_json does not check each string again.
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            return Err(Error::MalformedBody {
                reason: format!("текст не в кодировке UTF-8 (байт {})", e.valid_up_to()),
            });
        }
    };
    // serde would read a JSON array as a struct's fields in order; a body is always an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
            return Err(Error::MalformedBody {
                reason: "ожидался JSON-объект".into(),
            });
        }
        return Err(Error::InvalidRequest {
            detail: "тело запроса должно быть JSON-объектом".into(),
        });
    }
    // The common case first, untracked: tracking the path costs an allocation per key, and
    // only a failure needs it.
    let mut de = serde_json::Deserializer::from_str(text);
    if let Ok(value) = T::deserialize(&mut de)
        && de.end().is_ok()
    {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(path_error)?;
    de.end().map_err(|e| Error::MalformedBody {
        reason: e.to_string(),
    })?;
    Ok(value)
}

fn path_error(err: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.classify() != Category::Data {
        return Error::MalformedBody {
            reason: inner.to_string(),
        };
    }
    let full = inner.to_string();
    // serde_json appends " at line L column C"; the path already says where.
    let message = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(m, _)| m);
    classify_data_error(&path, message)
}

fn classify_data_error(path: &str, message: &str) -> Error {
    let at_root = path.is_empty() || path == ".";
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        let parameter = if at_root {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        return Error::invalid(
            parameter,
            FieldProblem::Missing,
            "обязательное поле отсутствует",
        );
    }
    if at_root {
        return Error::InvalidRequest {
            detail: format!("тело запроса должно быть JSON-объектом ({message})"),
        };
    }
    let (problem, what) = if message.starts_with("invalid type") {
        (FieldProblem::WrongType, "неверный тип значения")
    } else if message.starts_with("unknown variant") {
        (FieldProblem::NotAllowed, "значение не из списка допустимых")
    } else {
        (FieldProblem::NotAllowed, "недопустимое значение")
    };
    Error::invalid(path, problem, format!("{what} ({message})"))
}

/// The query parameters of a GET, decoded (`application/x-www-form-urlencoded` rules).
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Query(pairs)
    }

    /// A parameter that must be present and not blank; the first one wins if repeated.
    pub fn required(&self, name: &str) -> Result<String, Error> {
        let value = self
            .0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .ok_or_else(|| {
                Error::invalid(
                    name,
                    FieldProblem::Missing,
                    "обязательный параметр запроса отсутствует",
                )
            })?;
        if value.is_empty() {
            return Err(Error::invalid(
                name,
                FieldProblem::NotAllowed,
                "параметр не должен быть пустым",
            ));
        }
        Ok(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loyalty::models::RecalcRequest;

    fn parameter_of(err: Error) -> String {
        match err {
            Error::InvalidField { parameter, .. } => parameter,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    const STORE: &str = r#""retailStore":{"meta":{"id":"s"}}"#;

    fn recalc(positions: &str) -> String {
        format!(r#"{{{STORE},"agent":{{"meta":{{"id":"a"}}}},"positions":{positions}}}"#)
    }

    #[test]
    fn wrong_type_deep_in_an_array_names_the_path() {
        let body = recalc(
            r#"[{"assortment":{"meta":{"id":"p"}},"quantity":1,"price":1},
                {"assortment":{"meta":{"id":"p"}},"quantity":1,"price":1},
                {"assortment":{"meta":{"id":"p"}},"quantity":"x","price":1}]"#,
        );
        let err = json_body::<RecalcRequest>(body.as_bytes()).unwrap_err();
        assert_eq!(parameter_of(err), "positions[2].quantity");
    }

    #[test]
    fn missing_field_names_where_it_should_be() {
        let body = recalc(r#"[{"assortment":{"meta":{"id":"p"}},"price":1}]"#);
        let err = json_body::<RecalcRequest>(body.as_bytes()).unwrap_err();
        assert_eq!(parameter_of(err), "positions[0].quantity");

        let body = format!(r#"{{{STORE},"positions":[]}}"#);
        let err = json_body::<RecalcRequest>(body.as_bytes()).unwrap_err();
        assert_eq!(parameter_of(err), "agent");
    }

    #[test]
    fn bad_enum_member_is_not_allowed() {
        let body = format!(
            r#"{{{STORE},"agent":{{"meta":{{"id":"a"}}}},"positions":[],"bonusProgram":{{"transactionType":"STEALING"}}}}"#
        );
        match json_body::<RecalcRequest>(body.as_bytes()).unwrap_err() {
            Error::InvalidField {
                parameter, problem, ..
            } => {
                assert_eq!(parameter, "bonusProgram.transactionType");
                assert_eq!(problem, FieldProblem::NotAllowed);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_date_names_the_field() {
        let body = format!(
            r#"{{{STORE},"agent":{{"meta":{{"id":"a"}},"birthDate":"2023-07-14T00:00:00Z"}},"positions":[]}}"#
        );
        let err = json_body::<RecalcRequest>(body.as_bytes()).unwrap_err();
        assert_eq!(parameter_of(err), "agent.birthDate");
    }

    #[test]
    fn huge_number_is_a_field_error_not_a_panic() {
        let body = recalc(r#"[{"assortment":{"meta":{"id":"p"}},"quantity":1e400,"price":1}]"#);
        let err = json_body::<RecalcRequest>(body.as_bytes()).unwrap_err();
        assert_eq!(parameter_of(err), "positions[0].quantity");
    }

    #[test]
    fn not_json_and_not_utf8_and_trailing_garbage_are_malformed() {
        for body in [
            &b"not json"[..],
            b"{\"a\":",
            b"\xff\xfe{}",
            b"   ",
            b"{\"a\":1",
        ] {
            let err = json_body::<RecalcRequest>(body).unwrap_err();
            assert!(
                matches!(err, Error::MalformedBody { .. }),
                "{body:?} → {err:?}"
            );
        }
        let valid = recalc("[]");
        json_body::<RecalcRequest>(valid.as_bytes()).unwrap();
        let trailing = format!("{valid} x");
        let err = json_body::<RecalcRequest>(trailing.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::MalformedBody { .. }), "{err:?}");
    }

    #[test]
    fn non_object_root_is_a_request_error() {
        for body in [&b"[1,2]"[..], b"\"text\"", b"42", b"null"] {
            let err = json_body::<RecalcRequest>(body).unwrap_err();
            assert!(
                matches!(err, Error::InvalidRequest { .. }),
                "{body:?} → {err:?}"
            );
        }
    }

    #[test]
    fn query_decodes_and_requires() {
        let q = Query::parse(Some("search=%2B7%20555&retailStoreId=r1&search=second"));
        assert_eq!(q.required("search").unwrap(), "+7 555");
        assert_eq!(q.required("retailStoreId").unwrap(), "r1");
        assert_eq!(parameter_of(q.required("name").unwrap_err()), "name");
        let q = Query::parse(Some("name=&retailStoreId=r"));
        assert_eq!(parameter_of(q.required("name").unwrap_err()), "name");
        assert_eq!(
            parameter_of(Query::parse(None).required("search").unwrap_err()),
            "search"
        );
    }
}

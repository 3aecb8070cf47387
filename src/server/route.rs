//! Which endpoint a (method, path) pair names. Unknown path → 404, known path with the wrong
//! method → 405 listing the allowed ones.

use http::Method;

use crate::error::Error;
use crate::loyalty::ops::Op;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    /// Prometheus metrics, outside the base path like the health checks.
    Metrics,
    Op(Op),
}

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const GET_POST: &[Method] = &[Method::GET, Method::POST];

pub fn route(base_path: &str, method: &Method, path: &str) -> Result<Route, Error> {
    match path {
        "/healthz" => return only(method, GET, Route::Healthz),
        "/readyz" => return only(method, GET, Route::Readyz),
        "/metrics" => return only(method, GET, Route::Metrics),
        _ => {}
    }
    let not_found = || Error::NotFound {
        path: path.to_string(),
    };
    let relative = path.strip_prefix(base_path).ok_or_else(not_found)?;
    let op = match (relative, method) {
        ("/counterparty", &Method::GET) => Op::CounterpartySearch,
        ("/counterparty", &Method::POST) => Op::CounterpartyCreate,
        ("/counterparty", _) => return Err(Error::MethodNotAllowed { allowed: GET_POST }),
        _ => {
            let op = Op::ALL
                .into_iter()
                .find(|op| op.path() == relative)
                .ok_or_else(not_found)?;
            return only(
                method,
                if op.method() == Method::GET {
                    GET
                } else {
                    POST
                },
                Route::Op(op),
            );
        }
    };
    Ok(Route::Op(op))
}

fn only(method: &Method, allowed: &'static [Method], route: Route) -> Result<Route, Error> {
    if allowed.contains(method) {
        Ok(route)
    } else {
        Err(Error::MethodNotAllowed { allowed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_routes_to_itself() {
        for op in Op::ALL {
            assert_eq!(
                route("", &op.method(), op.path()).unwrap(),
                Route::Op(op),
                "{op}"
            );
            let prefixed = format!("/loyalty{}", op.path());
            assert_eq!(
                route("/loyalty", &op.method(), &prefixed).unwrap(),
                Route::Op(op)
            );
        }
    }

    #[test]
    fn unknown_paths_and_methods() {
        assert!(matches!(
            route("", &Method::POST, "/nope"),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            route("", &Method::POST, "/counterparty/"),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            route("/loyalty", &Method::POST, "/retaildemand"),
            Err(Error::NotFound { .. })
        ));
        match route("", &Method::GET, "/retaildemand/recalc") {
            Err(Error::MethodNotAllowed { allowed }) => assert_eq!(allowed, POST),
            other => panic!("{other:?}"),
        }
        match route("", &Method::DELETE, "/counterparty") {
            Err(Error::MethodNotAllowed { allowed }) => assert_eq!(allowed, GET_POST),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            route("", &Method::POST, "/giftcard"),
            Err(Error::MethodNotAllowed { .. })
        ));
        assert_eq!(
            route("/x", &Method::GET, "/healthz").unwrap(),
            Route::Healthz
        );
        assert_eq!(
            route("/x", &Method::GET, "/metrics").unwrap(),
            Route::Metrics
        );
        assert!(matches!(
            route("", &Method::POST, "/metrics"),
            Err(Error::MethodNotAllowed { .. })
        ));
    }
}

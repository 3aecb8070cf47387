//! The nine LoyaltyAPI operations a mapping file maps (`[ops.<name>]`): their names and the
//! HTTP method and path MoySklad calls each by. What the bridge does for one lives in the bridge.

use std::fmt;

use http::Method;

/// A LoyaltyAPI operation: what a (method, path) pair means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    CounterpartyCreate,
    CounterpartySearch,
    CounterpartyDetail,
    CounterpartyVerify,
    RetaildemandRecalc,
    RetaildemandVerify,
    RetaildemandCreate,
    RetailsalesreturnCreate,
    GiftcardSearch,
}

impl Op {
    pub const ALL: [Op; 9] = [
        Op::CounterpartyCreate,
        Op::CounterpartySearch,
        Op::CounterpartyDetail,
        Op::CounterpartyVerify,
        Op::RetaildemandRecalc,
        Op::RetaildemandVerify,
        Op::RetaildemandCreate,
        Op::RetailsalesreturnCreate,
        Op::GiftcardSearch,
    ];

    /// Stable name, used in logs, metrics and mapping files (`[ops.<name>]`).
    pub fn name(self) -> &'static str {
        match self {
            Op::CounterpartyCreate => "counterparty.create",
            Op::CounterpartySearch => "counterparty.search",
            Op::CounterpartyDetail => "counterparty.detail",
            Op::CounterpartyVerify => "counterparty.verify",
            Op::RetaildemandRecalc => "retaildemand.recalc",
            Op::RetaildemandVerify => "retaildemand.verify",
            Op::RetaildemandCreate => "retaildemand.create",
            Op::RetailsalesreturnCreate => "retailsalesreturn.create",
            Op::GiftcardSearch => "giftcard.search",
        }
    }

    /// The operation of that [`Op::name`], if any.
    pub fn named(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    pub fn method(self) -> Method {
        match self {
            Op::CounterpartySearch | Op::GiftcardSearch => Method::GET,
            _ => Method::POST,
        }
    }

    /// Path relative to the configured base path.
    pub fn path(self) -> &'static str {
        match self {
            Op::CounterpartyCreate | Op::CounterpartySearch => "/counterparty",
            Op::CounterpartyDetail => "/counterparty/detail",
            Op::CounterpartyVerify => "/counterparty/verify",
            Op::RetaildemandRecalc => "/retaildemand/recalc",
            Op::RetaildemandVerify => "/retaildemand/verify",
            Op::RetaildemandCreate => "/retaildemand",
            Op::RetailsalesreturnCreate => "/retailsalesreturn",
            Op::GiftcardSearch => "/giftcard",
        }
    }

    /// Whether the call carries a JSON body (the two lookups are GETs with a query string).
    pub fn has_body(self) -> bool {
        self.method() == Method::POST
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Op;

    #[test]
    fn every_op_is_found_by_its_name() {
        for op in Op::ALL {
            assert_eq!(Op::named(op.name()), Some(op));
        }
        assert_eq!(Op::named("retaildemand"), None);
    }
}

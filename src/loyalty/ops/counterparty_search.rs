//! Search customers by phone, card or name (`GET /counterparty?search=S&retailStoreId=R`).

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::CounterpartySearchQuery;
use crate::loyalty::parse::Query;

pub fn parse(query: &Query) -> Result<CounterpartySearchQuery, Error> {
    Ok(CounterpartySearchQuery {
        search: query.required("search")?,
        retail_store_id: query.required("retailStoreId")?,
    })
}

pub async fn run(ctx: &OpContext, _query: CounterpartySearchQuery) -> Result<Reply, Error> {
    match ctx.mapping(Op::CounterpartySearch)? {}
}

//! Search customers by phone, card or name (`GET /counterparty?search=S&retailStoreId=R`).

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::{CounterpartySearchQuery, CounterpartySearchResponse};
use crate::loyalty::parse::Query;

pub fn parse(query: &Query) -> Result<CounterpartySearchQuery, Error> {
    Ok(CounterpartySearchQuery {
        search: query.required("search")?,
        retail_store_id: query.required("retailStoreId")?,
    })
}

pub async fn run(ctx: &OpContext, query: CounterpartySearchQuery) -> Result<Reply, Error> {
    let outcome = ctx.execute(Op::CounterpartySearch, &query).await?;
    let found: CounterpartySearchResponse = ctx.answer(Op::CounterpartySearch, outcome)?;
    // MoySklad stores these ids: they must be GUIDs (mappings use uuid_v5 for other vendor ids).
    if let Some((i, row)) = found
        .rows
        .iter()
        .enumerate()
        .find(|(_, r)| uuid::Uuid::parse_str(&r.id).is_err())
    {
        return Err(Error::MappingFailed {
            op: Op::CounterpartySearch,
            at: format!("response.body: rows[{i}].id"),
            detail: format!("{:?} is not a GUID", row.id),
        });
    }
    Ok(Reply::Customers(found))
}

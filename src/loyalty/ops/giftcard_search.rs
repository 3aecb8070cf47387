//! Gift card (certificate) lookup (`GET /giftcard?name=N&retailStoreId=R`).

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::GiftCardQuery;
use crate::loyalty::parse::Query;

pub fn parse(query: &Query) -> Result<GiftCardQuery, Error> {
    Ok(GiftCardQuery {
        name: query.required("name")?,
        retail_store_id: query.required("retailStoreId")?,
    })
}

pub async fn run(ctx: &OpContext, _query: GiftCardQuery) -> Result<Reply, Error> {
    match ctx.mapping(Op::GiftcardSearch)? {}
}

//! Record a completed sale (`POST /retaildemand`). The mapping derives the vendor's idempotency
//! key from `meta.id`, so a repeated sale reaches the vendor as the same transaction.

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::SaleRequest;

pub async fn run(ctx: &OpContext, request: SaleRequest) -> Result<Reply, Error> {
    ctx.execute(Op::RetaildemandCreate, &request).await?;
    Ok(Reply::SaleRecorded)
}

//! Record a return (`POST /retailsalesreturn`); the loyalty side reverses points itself from the
//! linked sale.

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::ReturnRequest;

pub async fn run(ctx: &OpContext, request: ReturnRequest) -> Result<Reply, Error> {
    ctx.execute(Op::RetailsalesreturnCreate, &request).await?;
    Ok(Reply::ReturnRecorded)
}

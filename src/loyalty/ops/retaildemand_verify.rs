//! Send a code that confirms spending points (`POST /retaildemand/verify`).

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::RetaildemandVerifyRequest;

pub async fn run(ctx: &OpContext, request: RetaildemandVerifyRequest) -> Result<Reply, Error> {
    let outcome = ctx.execute(Op::RetaildemandVerify, &request).await?;
    Ok(Reply::CodeSent(
        ctx.answer(Op::RetaildemandVerify, outcome)?,
    ))
}

//! Send a registration confirmation code (`POST /counterparty/verify`).

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::CounterpartyVerifyRequest;

pub async fn run(ctx: &OpContext, request: CounterpartyVerifyRequest) -> Result<Reply, Error> {
    let outcome = ctx.execute(Op::CounterpartyVerify, &request).await?;
    Ok(Reply::CodeSent(
        ctx.answer(Op::CounterpartyVerify, outcome)?,
    ))
}

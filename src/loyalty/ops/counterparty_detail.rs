//! A customer's bonus balance (`POST /counterparty/detail`).

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::CounterpartyDetailRequest;

pub async fn run(ctx: &OpContext, request: CounterpartyDetailRequest) -> Result<Reply, Error> {
    let outcome = ctx.execute(Op::CounterpartyDetail, &request).await?;
    Ok(Reply::Balance(ctx.answer(Op::CounterpartyDetail, outcome)?))
}

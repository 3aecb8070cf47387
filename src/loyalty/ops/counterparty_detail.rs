//! A customer's bonus balance (`POST /counterparty/detail`).

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::CounterpartyDetailRequest;

pub async fn run(ctx: &OpContext, _request: CounterpartyDetailRequest) -> Result<Reply, Error> {
    match ctx.mapping(Op::CounterpartyDetail)? {}
}

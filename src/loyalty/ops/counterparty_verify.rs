//! Send a registration confirmation code (`POST /counterparty/verify`).

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::CounterpartyVerifyRequest;

pub async fn run(ctx: &OpContext, _request: CounterpartyVerifyRequest) -> Result<Reply, Error> {
    match ctx.mapping(Op::CounterpartyVerify)? {}
}

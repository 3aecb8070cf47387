//! Create a customer (`POST /counterparty`).

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::CounterpartyCreateRequest;

pub async fn run(ctx: &OpContext, _request: CounterpartyCreateRequest) -> Result<Reply, Error> {
    match ctx.mapping(Op::CounterpartyCreate)? {}
}

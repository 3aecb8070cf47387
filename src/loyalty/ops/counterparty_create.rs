//! Create a customer (`POST /counterparty`). The mapping decides whether the vendor requires a
//! confirmation code first (412, code 28001) and how the customer is registered.

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::CounterpartyCreateRequest;

pub async fn run(ctx: &OpContext, request: CounterpartyCreateRequest) -> Result<Reply, Error> {
    ctx.execute(Op::CounterpartyCreate, &request).await?;
    Ok(Reply::CustomerCreated)
}

//! Send a code that confirms spending points (`POST /retaildemand/verify`).

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::RetaildemandVerifyRequest;

pub async fn run(ctx: &OpContext, _request: RetaildemandVerifyRequest) -> Result<Reply, Error> {
    match ctx.mapping(Op::RetaildemandVerify)? {}
}

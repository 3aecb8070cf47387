//! Price a cart: discounts, points to earn or spend (`POST /retaildemand/recalc`). The hot path.

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::RecalcRequest;

pub async fn run(ctx: &OpContext, _request: RecalcRequest) -> Result<Reply, Error> {
    match ctx.mapping(Op::RetaildemandRecalc)? {}
}

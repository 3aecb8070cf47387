//! Price a cart: discounts, points to earn or spend (`POST /retaildemand/recalc`). The hot path:
//! a preview that changes nothing on the loyalty side.

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::{RecalcRequest, RecalcResponse};

pub async fn run(ctx: &OpContext, request: RecalcRequest) -> Result<Reply, Error> {
    let outcome = ctx.execute(Op::RetaildemandRecalc, &request).await?;
    let priced: RecalcResponse = ctx.answer(Op::RetaildemandRecalc, outcome)?;
    Ok(Reply::Priced(Box::new(priced)))
}

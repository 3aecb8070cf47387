//! Record a completed sale (`POST /retaildemand`), exactly once per `meta.id`.

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::SaleRequest;

pub async fn run(ctx: &OpContext, _request: SaleRequest) -> Result<Reply, Error> {
    match ctx.mapping(Op::RetaildemandCreate)? {}
}

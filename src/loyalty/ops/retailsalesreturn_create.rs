//! Record a return (`POST /retailsalesreturn`); the loyalty side reverses points itself.

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::ReturnRequest;

pub async fn run(ctx: &OpContext, _request: ReturnRequest) -> Result<Reply, Error> {
    match ctx.mapping(Op::RetailsalesreturnCreate)? {}
}

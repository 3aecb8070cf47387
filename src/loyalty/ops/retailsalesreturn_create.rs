//! Record a return (`POST /retailsalesreturn`), exactly once per `meta.id`; the loyalty side
//! reverses points itself from the linked sale. The plan sees what the sale's journal record
//! kept (the vendor's operation id) as `.sale`.

use super::{Op, OpContext, Reply, to_json};
use crate::error::Error;
use crate::loyalty::journal;
use crate::loyalty::models::ReturnRequest;
use crate::store::Kind;

pub async fn run(ctx: &OpContext, request: ReturnRequest) -> Result<Reply, Error> {
    let Some(journal) = ctx.journal.clone() else {
        ctx.execute(Op::RetailsalesreturnCreate, &request).await?;
        return Ok(Reply::ReturnRecorded);
    };
    let sale =
        journal::sale_of_return(&journal, &ctx.tenant.name, request.demand.meta.id()).await?;
    let id = request.meta.id.trim().to_string();
    let req = to_json(Op::RetailsalesreturnCreate, &request)?;
    let queueable = ctx.tenant.outbox.returns;
    journal::once(
        ctx.caller(),
        &journal,
        Kind::Return,
        &id,
        queueable,
        req,
        |req| ctx.execute_value(Op::RetailsalesreturnCreate, req, sale),
    )
    .await?;
    Ok(Reply::ReturnRecorded)
}

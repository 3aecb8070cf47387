//! Record a completed sale (`POST /retaildemand`), exactly once per `meta.id`: through the
//! journal when the server has one. The mapping also derives the vendor's idempotency key from
//! `meta.id`, so even a repeat the journal lets through reaches the vendor as the same
//! transaction.

use rust_decimal::Decimal;

use super::{Op, OpContext, Reply, to_json};
use crate::error::Error;
use crate::loyalty::journal;
use crate::loyalty::models::SaleRequest;
use crate::store::Kind;

pub async fn run(ctx: &OpContext, request: SaleRequest) -> Result<Reply, Error> {
    let Some(journal) = ctx.journal.clone() else {
        ctx.execute(Op::RetaildemandCreate, &request).await?;
        return Ok(Reply::SaleRecorded);
    };
    let policy = ctx.tenant.outbox;
    let queueable = if spends(&request) {
        policy.spending_sales
    } else {
        policy.earning_sales
    };
    let id = request.meta.id.trim().to_string();
    let req = to_json(Op::RetaildemandCreate, &request)?;
    journal::once(
        ctx.caller(),
        &journal,
        Kind::Sale,
        &id,
        queueable,
        req,
        |req| ctx.execute_value(Op::RetaildemandCreate, req, serde_json::Value::Null),
    )
    .await?;
    Ok(Reply::SaleRecorded)
}

/// The sale spends points or pays with a gift card: value the vendor must still approve.
fn spends(request: &SaleRequest) -> bool {
    let points = request
        .bonus_program
        .as_ref()
        .and_then(|b| b.bonus_value_to_spend)
        .is_some_and(|p| p.0 > Decimal::ZERO);
    let gift_cards = request.gift_cards.as_ref().is_some_and(|g| !g.is_empty());
    points || gift_cards
}

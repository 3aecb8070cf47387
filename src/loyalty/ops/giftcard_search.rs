//! Gift card (certificate) lookup (`GET /giftcard?name=N&retailStoreId=R`).

use super::{Op, OpContext, Reply};
use crate::error::Error;
use crate::loyalty::models::{GiftCardQuery, GiftCardResponse, GiftCardStatus};
use crate::loyalty::parse::Query;

pub fn parse(query: &Query) -> Result<GiftCardQuery, Error> {
    Ok(GiftCardQuery {
        name: query.required("name")?,
        retail_store_id: query.required("retailStoreId")?,
    })
}

pub async fn run(ctx: &OpContext, query: GiftCardQuery) -> Result<Reply, Error> {
    let outcome = ctx.execute(Op::GiftcardSearch, &query).await?;
    let card: GiftCardResponse = ctx.answer(Op::GiftcardSearch, outcome)?;
    let usable = matches!(
        card.status,
        GiftCardStatus::CanBeUsed | GiftCardStatus::PartiallyRedeemed
    );
    if usable && card.current_balance.is_none() {
        return Err(Error::MappingFailed {
            op: Op::GiftcardSearch,
            at: "response.body: currentBalance".into(),
            detail: "required when the card can be used".into(),
        });
    }
    Ok(Reply::GiftCard(card))
}

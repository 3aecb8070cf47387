//! `outbox`: list, retry and drop the sales accepted while a vendor was down.

use anyhow::{Context, bail};
use clap::Subcommand;
use loyalty_bridge::Config;

use super::runtime;

#[derive(Subcommand)]
pub enum OutboxAction {
    /// Items waiting for delivery and items the vendor refused (oldest first).
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Also delivered items (until they are pruned).
        #[arg(long)]
        all: bool,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put a refused (or waiting) item back in the queue, due now; a running bridge delivers it
    /// within a second.
    Retry { seq: i64 },
    /// Remove an undelivered item; MoySklad's next repeat of that sale starts afresh.
    Drop { seq: i64 },
}

pub fn outbox(config: &Config, action: OutboxAction) -> anyhow::Result<()> {
    use loyalty_bridge::store::{self, now_ms};
    runtime()?.block_on(async {
        let store = store::open(&config.store)
            .await
            .context("cannot open the store")?;
        match action {
            OutboxAction::List { tenant, all, json } => {
                let items = store.outbox_items(tenant.as_deref(), all).await?;
                if !json {
                    println!(
                        "{:>6}  {:<16} {:<6} {:<38} {:<9} {:>8}  {:<20} last error",
                        "seq", "tenant", "kind", "meta.id", "state", "attempts", "queued at"
                    );
                }
                for item in &items {
                    let queued = chrono::DateTime::from_timestamp_millis(item.created_ms)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default();
                    if json {
                        let line = serde_json::json!({
                            "seq": item.seq, "tenant": item.tenant, "kind": item.kind.as_str(),
                            "id": item.id, "state": item.state.as_str(), "attempts": item.attempts,
                            "created_ms": item.created_ms, "next_attempt_ms": item.next_attempt_ms,
                            "last_error": item.last_error,
                        });
                        println!("{line}");
                    } else {
                        println!(
                            "{:>6}  {:<16} {:<6} {:<38} {:<9} {:>8}  {:<20} {}",
                            item.seq,
                            item.tenant,
                            item.kind.as_str(),
                            item.id,
                            item.state.as_str(),
                            item.attempts,
                            queued,
                            item.last_error.as_deref().unwrap_or("")
                        );
                    }
                }
                if !json {
                    eprintln!("{} item(s)", items.len());
                }
            }
            OutboxAction::Retry { seq } => {
                if !store.outbox_retry(seq, now_ms()).await? {
                    bail!("no undelivered outbox item {seq}");
                }
                println!("item {seq} is due now");
            }
            OutboxAction::Drop { seq } => {
                if !store.outbox_drop(seq, now_ms()).await? {
                    bail!("no undelivered outbox item {seq}");
                }
                println!("item {seq} dropped");
            }
        }
        Ok(())
    })
}

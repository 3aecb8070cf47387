//! `map`: a dry run printing the vendor request(s) a MoySklad request would cause.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use engine::example::Canned;
use engine::op::Op;
use engine::plan::Mapping;
use loyalty_bridge::loyalty::examples::{self, CannedUpstream};

use super::runtime;

pub fn map(op: &str, mapping_path: &Path) -> anyhow::Result<()> {
    let op = Op::named(op)
        .or_else(|| {
            Op::ALL
                .into_iter()
                .find(|o| o.name().ends_with(&format!(".{op}")))
        })
        .with_context(|| format!("unknown operation {op:?}"))?;
    let mapping = Arc::new(Mapping::load(mapping_path)?);
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the request from stdin")?;
    let request: serde_json::Value =
        serde_json::from_str(&text).context("the request on stdin is not JSON")?;
    // Every vendor call is answered `{}` with 200: later steps see stand-in answers.
    let upstream = Arc::new(CannedUpstream::new(
        Default::default(),
        Some(Canned::Answer {
            status: 200,
            body: "{}".into(),
        }),
    ));
    let answer = runtime()?.block_on(examples::answer(mapping, op, &request, upstream.clone()));
    let calls = upstream.take_calls();
    if calls.is_empty() {
        println!(
            "(no vendor call; the bridge would answer {} {})",
            answer.status, answer.body
        );
    }
    for call in calls {
        println!("# step {}", call.step);
        println!("{} {}", call.method, call.url);
        for (name, value) in &call.headers {
            let shown = if is_secret_header(name.as_str()) {
                "****"
            } else {
                value.to_str().unwrap_or("<binary>")
            };
            println!("{name}: {shown}");
        }
        if let Some(body) = &call.body {
            let pretty = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            println!("\n{pretty}");
        }
        println!();
    }
    Ok(())
}

fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["key", "auth", "token", "secret", "password"]
        .iter()
        .any(|s| name.contains(s))
}

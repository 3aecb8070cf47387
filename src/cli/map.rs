//! `map`: a dry run printing the vendor request(s) a MoySklad request would cause, in the
//! world the options give (the tenant's settings and credentials, the returned sale), read in
//! the formats of a golden example's `settings`, `credentials`, `remembered` and `sale` keys.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use engine::example::{self, Canned, Given};
use engine::op::Op;
use engine::plan::Mapping;
use loyalty_bridge::loyalty::examples::{self, CannedUpstream};

use super::runtime;

/// `map`'s options.
pub struct MapArgs {
    pub op: String,
    pub mapping: PathBuf,
    pub settings: Option<PathBuf>,
    pub sale: Option<PathBuf>,
    pub credentials: Option<PathBuf>,
    pub remembered: Option<PathBuf>,
}

pub fn map(args: MapArgs) -> anyhow::Result<()> {
    let op = Op::named(&args.op)
        .or_else(|| {
            Op::ALL
                .into_iter()
                .find(|o| o.name().ends_with(&format!(".{}", args.op)))
        })
        .with_context(|| format!("unknown operation {:?}", args.op))?;
    let given = Given {
        settings: read_option(
            "--settings",
            args.settings.as_deref(),
            example::parse_settings,
        )?
        .unwrap_or_default(),
        credentials: read_option(
            "--credentials",
            args.credentials.as_deref(),
            example::parse_credentials,
        )?
        .unwrap_or_default(),
        remembered: read_option(
            "--remembered",
            args.remembered.as_deref(),
            example::parse_remembered,
        )?
        .unwrap_or_default(),
        sale: read_option("--sale", args.sale.as_deref(), example::parse_sale)?,
    };
    if given.sale.is_some() && op != Op::RetailsalesreturnCreate {
        bail!("--sale: only a return (retailsalesreturn.create) has a sale, not {op}");
    }
    let mapping = Arc::new(Mapping::load(&args.mapping)?);
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
    let run = runtime()?
        .block_on(examples::answer_given(
            &mapping,
            op,
            &request,
            &given,
            upstream.clone(),
        ))
        .map_err(|problem| {
            let file = args.sale.as_deref().unwrap_or(Path::new("?"));
            anyhow!("--sale {}: {problem}", file.display())
        })?;
    let answer = run.answer;
    let masked = |text: &str| mask_credentials(text, &given);
    let calls = upstream.take_calls();
    if calls.is_empty() {
        println!(
            "(no vendor call; the bridge would answer {} {})",
            answer.status,
            masked(&answer.body.to_string())
        );
    }
    for call in calls {
        println!("# step {}", call.step);
        println!("{} {}", call.method, masked(&call.url));
        for (name, value) in &call.headers {
            let shown = if is_secret_header(name.as_str()) {
                "****".to_string()
            } else {
                masked(value.to_str().unwrap_or("<binary>"))
            };
            println!("{name}: {shown}");
        }
        if let Some(body) = &call.body {
            let pretty = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            println!("\n{}", masked(&pretty));
        }
        println!();
    }
    Ok(())
}

/// Reads the JSON file an option names with `parse`; errors name the option and the file.
fn read_option<T>(
    option: &str,
    path: Option<&Path>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> anyhow::Result<Option<T>> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{option} {}: cannot read the file", path.display()))?;
    parse(&text)
        .map(Some)
        .map_err(|problem| anyhow!("{option} {}: {problem}", path.display()))
}

fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["key", "auth", "token", "secret", "password"]
        .iter()
        .any(|s| name.contains(s))
}

/// `text` with every credential value masked: a mapping may put one in a path, a query, a
/// header not named like a secret, or a body. Values shorter than 4 characters are left, as
/// masking them would garble the output (as the bridge's own error texts do).
fn mask_credentials(text: &str, given: &Given) -> String {
    given
        .credentials
        .values()
        .filter(|v| v.len() >= 4)
        .fold(text.to_string(), |t, secret| {
            t.replace(secret.as_str(), "****")
        })
}

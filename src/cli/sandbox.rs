//! `sandbox`: a vendor emulator with demo data, for trying the bridge without a vendor account.

use std::io::Write;

use anyhow::{Context, bail};
use clap::Args;
use loyalty_bridge::telemetry;

use super::{runtime, shutdown_signal};

#[derive(Args)]
pub struct SandboxArgs {
    /// Which vendor: maxma, uds, premiumbonus, or moysklad (its Vendor API).
    pub vendor: String,
    #[arg(long, default_value = "127.0.0.1:9081")]
    pub listen: std::net::SocketAddr,
    /// The key the emulator accepts (MAXMA processing key, UDS api key, Premium Bonus token).
    #[arg(
        long,
        env = "SANDBOX_KEY",
        default_value = "sandbox-key",
        hide_env_values = true
    )]
    pub key: String,
    /// UDS only: the company id of the Basic credentials.
    #[arg(long, default_value = "549755813888")]
    pub company_id: String,
    /// MAXMA only: answer every request this many milliseconds late (a slow vendor, for
    /// load tests; see benches/load/run.sh).
    #[arg(long)]
    pub delay_ms: Option<u64>,
    /// MAXMA only: answer at most this many calls in each second (whole seconds from start),
    /// the rest 429 with `Retry-After: 1`, as a rate-limiting proxy in front of MAXMA would. On
    /// exit the sandbox prints, as one JSON line on stdout, the calls that arrived in each second
    /// and how many it refused (benches/load/instances.sh reads them).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit_per_second: Option<u32>,
    /// moysklad only: the app's id (as `moysklad_app.app_id`); the key is its secret key.
    #[arg(long, default_value = "4c5b1a2e-7d3f-4a9b-8c1d-2e3f4a5b6c7d")]
    pub app_id: String,
    /// moysklad only: the app's appUid (as `moysklad_app.app_uid`).
    #[arg(long, default_value = "loyalty-bridge.sandbox")]
    pub app_uid: String,
    /// moysklad only: a running bridge's `moysklad_app.public_base_url`. The sandbox then
    /// installs the app for `--account` on it (as MoySklad would) and prints the settings
    /// page's URLs (the bridge's `frame_ancestors` must list this sandbox's origin).
    #[arg(long)]
    pub bridge: Option<String>,
    /// moysklad only: the bridge's `moysklad_app.settings_path`.
    #[arg(long, default_value = "/moysklad/settings")]
    pub settings_path: String,
    /// moysklad only: the demo account's id.
    #[arg(long, default_value = "1f2e3d4c-0000-4000-8000-00000000d3e0")]
    pub account: String,
}

pub fn sandbox(args: SandboxArgs) -> anyhow::Result<()> {
    let SandboxArgs {
        vendor,
        listen,
        key,
        company_id,
        delay_ms,
        limit_per_second,
        app_id,
        app_uid,
        bridge,
        settings_path,
        account,
    } = args;
    let vendor = vendor.as_str();
    if delay_ms.is_some() && vendor != "maxma" {
        bail!("--delay-ms is supported by the maxma sandbox only");
    }
    if limit_per_second.is_some() && vendor != "maxma" {
        bail!("--limit-per-second is supported by the maxma sandbox only");
    }
    telemetry::init(&Default::default());
    runtime()?.block_on(async {
        let listener = loyalty_bridge::server::listen::bind(listen)
            .with_context(|| format!("cannot listen on {listen}"))?;
        eprintln!("{vendor} sandbox with demo data on http://{listen} (Ctrl-C to stop)");
        match vendor {
            "maxma" => {
                let emulator = emulators::maxma::MaxmaSandbox::with_demo_data(key);
                if let Some(ms) = delay_ms {
                    emulator.set_fault(Some(emulators::maxma::Fault::Delay(
                        std::time::Duration::from_millis(ms),
                    )));
                }
                let limit = limit_per_second.map(|n| n as usize);
                emulator.set_call_limit(limit);
                emulator.clone().serve(listener, shutdown_signal()).await?;
                if limit.is_some() {
                    let traffic = serde_json::json!({
                        "limit_per_second": limit,
                        "calls_per_second": emulator.calls_per_second(),
                        "refused_over_limit": emulator.refused_over_limit(),
                    });
                    // SIGPIPE is ignored in a server (main.rs): a reader that has gone
                    // away is no reason to panic on the way out.
                    let _ = writeln!(std::io::stdout().lock(), "{traffic}");
                }
            }
            "uds" => {
                emulators::uds::UdsSandbox::with_demo_data(company_id, key)
                    .serve(listener, shutdown_signal())
                    .await?
            }
            "premiumbonus" => {
                emulators::premiumbonus::PremiumBonusSandbox::with_demo_data(key)
                    .serve(listener, shutdown_signal())
                    .await?
            }
            "moysklad" => {
                eprintln!(
                    "MoySklad Vendor API at http://{listen}/api/vendor/1.0 (app {app_id}, appUid {app_uid})"
                );
                let mut emulator = emulators::moysklad::MoyskladSandbox::new(app_id, app_uid, key);
                if let Some(bridge) = bridge {
                    let bridge = bridge.trim_end_matches('/').to_owned();
                    emulator =
                        emulator.with_settings_page(format!("{bridge}{settings_path}"));
                    tokio::spawn(install_demo_account(
                        emulator.clone(),
                        bridge,
                        account,
                        listen,
                    ));
                }
                emulator.serve(listener, shutdown_signal()).await?
            }
            other => {
                bail!("no sandbox for {other:?}; available: maxma, uds, premiumbonus, moysklad")
            }
        }
        Ok(())
    })
}

/// `sandbox moysklad --bridge`: installs the app for the demo account, as MoySklad would, and
/// prints where to open the settings page.
async fn install_demo_account(
    emulator: emulators::moysklad::MoyskladSandbox,
    bridge: String,
    account: String,
    listen: std::net::SocketAddr,
) {
    let (status, answer) = emulator
        .install(&bridge, &account, "sandbox-access-token")
        .await;
    if status != 200 {
        eprintln!("installing the demo account on {bridge} failed: HTTP {status} {answer}");
        return;
    }
    eprintln!("installed on {bridge} for account {account}: {answer}");
    let frame = |admin: bool, locale: &str| {
        format!(
            "http://{listen}/sandbox/frame?accountId={account}&admin={admin}&userLocale={locale}"
        )
    };
    eprintln!(
        "settings page in a MoySklad-like frame (admin):     {}",
        frame(true, "ru_RU")
    );
    eprintln!(
        "                                     (admin, English): {}",
        frame(true, "en_US")
    );
    eprintln!(
        "                                     (not an admin):   {}",
        frame(false, "ru_RU")
    );
    let key = emulator.issue_context(&account, true);
    if let Some(url) = emulator.settings_url(&key, "ru_RU") {
        eprintln!("or open it directly (this context key works once, for 5 minutes): {url}");
    }
}

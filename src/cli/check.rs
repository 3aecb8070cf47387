//! `check`: the configuration and mapping files load, and every golden example passes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::plan::Mapping;
use loyalty_bridge::loyalty::examples;

use super::{load_config, runtime};

pub fn check(config_path: &Path, only: Vec<PathBuf>) -> anyhow::Result<()> {
    let paths = if only.is_empty() {
        let config = load_config(config_path);
        println!(
            "{}: ok, {} tenant(s)",
            config_path.display(),
            config.tenants.len()
        );
        for t in &config.tenants {
            println!("  {} → {} ({})", t.name, t.base_url, t.mapping.display());
        }
        let mut paths: Vec<PathBuf> = config.tenants.iter().map(|t| t.mapping.clone()).collect();
        paths.sort();
        paths.dedup();
        paths
    } else {
        only
    };
    let runtime = runtime()?;
    let mut failed = 0;
    for path in paths {
        let mapping = match Mapping::load(&path) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                println!("FAIL {e}");
                failed += 1;
                continue;
            }
        };
        println!(
            "{}: compiles ({} examples)",
            path.display(),
            mapping.examples.len()
        );
        for report in runtime.block_on(examples::run_examples(&mapping)) {
            if report.problems.is_empty() {
                println!("  ok   {}", report.name);
            } else {
                failed += 1;
                println!("  FAIL {}", report.name);
                for p in &report.problems {
                    // A problem's further lines (expected / sent) under its first.
                    println!("       {}", p.replace('\n', "\n       "));
                }
            }
        }
    }
    if failed > 0 {
        eprintln!("loyalty-bridge check: {failed} problem(s)");
        std::process::exit(1);
    }
    Ok(())
}

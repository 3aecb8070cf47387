//! `new-mapping NAME`: writes a commented skeleton of a new vendor's mapping file. The skeleton
//! (`new_mapping.toml`, beside this file) maps all nine operations with a refusal each, so that
//! `check` passes on it as written, and shows each operation's steps and answer to fill in.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

/// The skeleton; `__NAME__` stands for the vendor's name.
const SKELETON: &str = include_str!("new_mapping.toml");

#[derive(Args)]
pub struct NewMappingArgs {
    /// The vendor's name (letters, digits, - and _): `vendor.name`, and the file NAME.toml.
    name: String,
    /// Write here instead of NAME.toml in the current directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Overwrite the file if it exists.
    #[arg(long)]
    force: bool,
}

pub fn new_mapping(args: NewMappingArgs) -> anyhow::Result<()> {
    let name = args.name.as_str();
    let usable = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !usable {
        bail!(
            "{name:?} cannot be a vendor's name: use letters, digits, - and _ (at most 64), e.g. acme"
        );
    }
    let path = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{name}.toml")));
    let text = SKELETON.replace("__NAME__", name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        // Refused atomically: a file that appears meanwhile is not overwritten either.
        options.create_new(true);
    }
    let mut file = match options.open(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} exists; not overwritten (--force overwrites it)",
            path.display()
        ),
        other => other.with_context(|| format!("cannot create {}", path.display()))?,
    };
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "{}: a skeleton of the nine operations, each refusing until filled in.\n\
         Test it: loyalty-bridge check --mapping {}",
        path.display(),
        path.display()
    );
    Ok(())
}

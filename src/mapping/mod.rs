//! The mapping engine: mapping files (`mappings/<vendor>.toml`) loaded, compiled and run.

pub mod builtins;
pub mod expr;
mod fast;
pub mod file;
pub mod golden;
pub mod memory;
mod natives;
pub mod need;
pub mod plan;
pub mod registry;
pub mod run;
pub mod template;

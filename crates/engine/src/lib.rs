//! The mapping language of loyalty-bridge (docs/design.md §3): a vendor's mapping file
//! (`mappings/<vendor>.toml`) read ([`file`]) and compiled ([`plan`]) into plans of steps,
//! rules and answers for the nine operations ([`op`]), whose expressions are jq ([`expr`]:
//! jaq, with a native evaluator for the common subset; [`jaq_value`] converts between the two
//! worlds), plus the built-in functions they call ([`builtins`]), templates ([`template`]),
//! what of a vendor answer a plan reads ([`need`]), money ([`amount`]) and the file's golden
//! examples ([`example`]).
//!
//! Nothing here does I/O beyond reading a mapping file, and nothing is async: the bridge runs
//! the plans against vendors (its `mapping` module) and runs the golden examples through its
//! operation handlers.

pub mod amount;
pub mod builtins;
pub mod example;
pub mod expr;
mod fast;
pub mod file;
pub mod jaq_value;
mod natives;
pub mod need;
pub mod op;
pub mod plan;
pub mod template;

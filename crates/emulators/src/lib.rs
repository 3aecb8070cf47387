//! Stateful emulators of the loyalty vendors the bridge supports (MAXMA, UDS, Premium Bonus)
//! and of MoySklad's Vendor API, used by the bridge's tests, by its default config (so
//! `cargo run` works without a vendor account) and by `loyalty-bridge sandbox`.
//!
//! Each emulator keeps its state in memory, speaks the vendor's wire protocol over plain HTTP
//! (HTTP/1.1 and h2c) and offers hooks for tests: seeding data, counting calls, reading
//! confirmation codes and injecting faults ([`Fault`]). What they share (serving, the state
//! lock, the key check, faults, the request log) is one harness; each vendor module keeps only
//! its protocol and state, following the vendor facts in the repository's `docs/vendors/`.

mod harness;
pub mod maxma;
mod money;
pub mod moysklad;
mod phone;
pub mod premiumbonus;
#[cfg(test)]
mod test_support;
pub mod uds;

pub use harness::Fault;

//! Stateful emulators of supported vendors, used by tests and by the default config so
//! `cargo run` works without a vendor account.
//!
//! Each emulator keeps its state in memory, speaks the vendor's wire protocol over plain HTTP
//! (HTTP/1.1 and h2c) and offers hooks for tests: seeding data, counting calls, reading
//! confirmation codes and injecting faults.

pub mod maxma;
pub mod moysklad;
pub mod premiumbonus;
pub mod uds;

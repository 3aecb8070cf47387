//! The integration tests: one binary (one link of the bridge and its dependencies, not one
//! per file), a module per area. Each starts real bridges and vendor emulators on
//! 127.0.0.1:0 (`common`).

mod common;

mod app;
mod binary;
mod closed_pipe;
mod config;
mod crash;
mod gateway;
mod hardening;
mod hostile_input;
mod instances;
mod journal;
mod load;
mod mapping_engine;
mod maxma;
mod metrics;
mod models;
mod new_mapping;
mod premiumbonus;
mod reload;
mod settings;
mod settings_browser;
mod store;
mod uds;
mod uds_prism;

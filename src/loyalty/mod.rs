//! The MoySklad side: LoyaltyAPI 1.0 models, authentication and the nine operations.

pub mod auth;
pub mod examples;
pub mod journal;
pub mod models;
pub mod ops;
pub mod parse;
pub mod validate;

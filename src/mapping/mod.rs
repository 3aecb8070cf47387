//! The mapping runtime: compiled plans (the `engine` crate) run against the tenant's vendor
//! ([`run`]), the values mappings keep between calls ([`memory`]) and the mapping files in use
//! ([`registry`]).

pub mod memory;
pub mod registry;
pub mod run;

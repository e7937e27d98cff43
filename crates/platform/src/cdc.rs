//! Names the CDC connector and the tools around it (local-stack, benches, tests) must agree on:
//! the replication slot the connector owns and the publication it streams, by default.

/// The logical replication slot the connector creates and owns.
pub const DEFAULT_SLOT: &str = "cdc_connector";

/// The publication the connector streams (`sql/init.sql` creates it for the captured tables).
pub const DEFAULT_PUBLICATION: &str = "cdc_publication";

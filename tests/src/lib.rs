//! Helpers shared by the end-to-end tests (`tests/*.rs`), so each test file holds only its
//! scenario: reading topics back through the registry ([`records`]), running the connector
//! ([`connector`]), SQL against the stack ([`sql`]), waiting ([`wait`]), the processor's inputs
//! and results ([`processor`]), a headless browser ([`browser`]), a small disk to fill
//! ([`disk`]), certificates ([`certificates`]), a TLS terminator in front of a plaintext
//! server ([`tls_terminator`]), the processes a run started ([`marked`]) and the fault suite
//! ([`faults`], also the `faults` binary). The most used ones are
//! re-exported here.

pub mod browser;
pub mod certificates;
pub mod connector;
pub mod disk;
pub mod faults;
pub mod marked;
pub mod processor;
pub mod records;
pub mod sql;
pub mod tls_terminator;
pub mod wait;

pub use connector::{
    connector_args_with, connector_command, connector_stderr_after_failure, delivered_events,
    metric_value, metrics_text, stack_without_connector, wait_for_health_status,
    wait_until_slot_confirms_current_wal,
};
pub use records::{
    CdcRecord, cdc_records, of_table, python_reader_lines, rand_suffix, read_cdc_until,
    read_topic_until,
};
pub use sql::{json_row, psql_command, psql_command_as, run_sql};
pub use wait::eventually;

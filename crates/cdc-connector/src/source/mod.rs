//! The PostgreSQL side: how to connect ([`connection`]), start-up checks and setup of the
//! publication and slot ([`setup`]), the replication connection and stream seam
//! ([`replication`]), and the catalog seam the streaming session queries ([`catalog`]).

pub mod catalog;
pub mod connection;
pub mod replication;
pub mod setup;
pub mod tls;

pub use connection::{PgTarget, SESSION_SETTINGS, connect, session_options};
pub use setup::{SourceSettings, emit_heartbeat, prepare};

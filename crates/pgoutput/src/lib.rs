//! A pure decoder for PostgreSQL logical replication with the `pgoutput`
//! plugin: bytes in, typed values out. No I/O, no async.
//!
//! - [`copy`]: the streaming replication messages inside CopyData (XLogData,
//!   keepalive, standby status update), LSNs and the PostgreSQL epoch.
//! - [`copy_text`]: rows of `COPY ... TO STDOUT` in text format (the snapshot's reads).
//! - [`message`]: the pgoutput protocol (versions 1 to 4) carried by XLogData.
//! - [`row`]: tuples turned into named, typed column values using the
//!   relation description.
//! - [`error`]: the one error type, [`DecodeError`].
//!
//! Malformed input of any kind yields a [`DecodeError`]; nothing here panics on
//! input or allocates more than the input could actually hold.

mod array;
pub mod copy;
pub mod copy_text;
pub mod error;
pub mod message;
mod reader;
pub mod row;
mod special;
mod temporal;
mod text;

pub use error::DecodeError;

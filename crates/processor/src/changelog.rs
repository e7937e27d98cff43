//! The record format of `topic_processor_changelog`, shared by the engine (which writes it
//! and restores tasks from it) and the query layer (which reads open windows from it).
//! Keys are postcard-encoded [`StateKey`]s, values postcard-encoded [`Stamped`] entries.

use serde::{Deserialize, Serialize};

use crate::task::{StateKey, StateValue};

/// A changelog value: the state entry (None once removed) and the repartition offset it
/// reflects.
#[derive(Serialize, Deserialize)]
pub struct Stamped {
    pub stamp: i64,
    pub value: Option<StateValue>,
}

pub fn decode_key(key: &[u8]) -> Result<StateKey, postcard::Error> {
    postcard::from_bytes(key)
}

pub fn decode_value(value: &[u8]) -> Result<Stamped, postcard::Error> {
    postcard::from_bytes(value)
}

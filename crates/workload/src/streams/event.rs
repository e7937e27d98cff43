//! The events the streaming generators produce: the platform's shared event model
//! (`platform::events`), which the gateway accepts and stores too. It has their two encodings:
//! the gateway's JSON (snake_case field names of the Avro schemas, RFC 3339 times) and Avro
//! values of the registered schemas (what the gateway would publish).

pub use platform::events::{
    AppEvent, ClickEvent, Device, DeviceType, EncodeError, Event, EventSource, ExternalRecord,
    ExternalSource, Interaction, LogEvent, LogLevel, rfc3339,
};

/// The schema's ExternalSource symbols.
pub const EXTERNAL_SOURCES: &[&str] = ExternalSource::SYMBOLS;

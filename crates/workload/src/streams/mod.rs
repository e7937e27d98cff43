//! Application and streaming sources: generators (pure), sinks (I/O) and the loop between them.

pub mod event;
pub mod generate;
pub mod run;
pub mod sink;

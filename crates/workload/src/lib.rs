//! Realistic traffic for the stack, and the ground truth end-to-end tests check it against.
//!
//! Generators and state machines are pure (a seeded RNG in, operations or events out); the
//! database, sinks and clocks are at the edges.

pub mod clock;
pub mod external;
pub mod oltp;
pub mod pace;
pub mod streams;

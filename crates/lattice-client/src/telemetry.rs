//! Answers of the telemetry read endpoints; the types live in `lattice_core::telemetry`.

pub use lattice_core::telemetry::*;

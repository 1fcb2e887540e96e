//! duet-telemetry

//! Redis bus.

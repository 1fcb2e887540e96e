//! In-process bus.

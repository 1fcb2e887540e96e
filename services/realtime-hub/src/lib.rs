//! duet-realtime-hub (work in progress)

pub mod connection;
pub mod core;
pub mod ctx;
pub mod error;
pub mod interview;
pub mod limits;
pub mod presence;
pub mod relay;
pub mod transport;
pub mod writer;

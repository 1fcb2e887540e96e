//! duet-gateway

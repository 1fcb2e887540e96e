//! duet-config

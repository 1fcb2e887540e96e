//! duet-realtime-hub

//! duet-session-api

//! duet-testkit

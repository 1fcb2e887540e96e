//! Throw-away redis-server for tests.

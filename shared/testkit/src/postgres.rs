//! Throw-away PostgreSQL for tests.

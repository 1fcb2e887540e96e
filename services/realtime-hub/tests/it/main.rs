//! One integration-test binary (faster linking); shared helpers in `common/`.

mod activity;
mod common;
mod core;
mod e2e;
mod hostile;
mod lifecycle;

//! Test support shared by the integration tests: the fake Kubernetes API server and helpers.
#![allow(dead_code)]

pub mod fake_api;
pub mod registry;
pub mod runner;

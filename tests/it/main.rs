//! The one integration-test binary (ripgrep's `tests/tests.rs`, uv's `tests/it/main.rs`): every
//! layer that needs more than a unit test lives in a module here, so `cargo test` builds and links
//! the test harness once.

#[path = "../support/mod.rs"]
mod support;

mod action_download;
mod action_js;
mod api_faults;
mod build_action;
mod build_real;
mod build_reuse;
mod check;
mod check_real;
mod cli;
mod cluster;
mod cluster_check;
mod container_step;
mod copy_bench;
mod exec;
mod fake_api;
mod job;
mod job_failures;
mod layering;
mod protocol;
mod rbac;
mod registry;
mod reuse_bench;
mod runner_image;
mod shim;
mod tainted_node;
mod transfer;
mod wait_bench;

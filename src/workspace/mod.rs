//! Moving files between the runner and the pods (copy mode).

pub mod remote;

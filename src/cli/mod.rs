//! The command line: the hook entry ([`hook`]), the `build` subcommand ([`build`]) and the
//! `check` subcommand ([`check`]).
//!
//! Owns what a process is asked to do and how a run turns into output; the work itself is done
//! by the layers below ([`crate::hooks`], [`crate::k8s`], [`crate::image`]). Nothing in the
//! library imports this module; `main.rs` calls it.

pub mod build;
pub mod check;
pub mod hook;

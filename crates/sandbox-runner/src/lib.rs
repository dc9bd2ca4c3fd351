//! The in-container runner, a static binary at [`sandbox_protocol::RUNNER_PATH`] in the image.
//!
//! Owns, inside the container: the supervisor that every call runs under ([`supervise`]), the
//! channel that carries many calls over one exec ([`serve`]), the server-side kill of a call's
//! whole process tree ([`kill`]), and the file tools ([`tools`]).
//!
//! Must not: talk to Docker or the network, or depend on the host side's crates; its only
//! contract with the host is [`sandbox_protocol`]. It runs as the unprivileged sandbox user,
//! so everything here works without capabilities.

pub mod kill;
pub mod procs;
pub mod serve;
pub mod supervise;
pub mod tools;

//! The workloads of issues #4, #7 and #10, one function each. Every one runs its four
//! contenders interleaved on the same warm sandbox(es) and returns one [`Row`]. This file owns
//! the catalogue and the dispatch; each module below holds the workloads of one kind.

mod calls;
mod cancel;
mod concurrency;
mod ensure;
mod memory;
mod output;
mod template;
mod tools;

use anyhow::{Result, bail};

use crate::bench::Bench;
use crate::stats::Row;

/// Every workload, in the order they run. `cancel` goes last: if it fails half-way it may
/// leave sleeping processes behind, and nothing should run after that in the same sandbox.
pub const ALL: &[&str] = &[
    "warm_true",
    "shell_echo_env",
    "read_10k",
    "write_10k",
    "cpu_per_call",
    "first_byte",
    "output_200mb",
    "concurrent_16",
    "concurrent_64",
    "warm_ensure",
    "idle_memory",
    "cold_ensure",
    "cancel",
];

/// Runs workload `name`.
pub async fn run(b: &Bench, name: &str) -> Result<Row> {
    match name {
        "warm_true" => calls::warm_true(b).await,
        "shell_echo_env" => tools::shell_echo_env(b).await,
        "read_10k" => tools::read_10k(b).await,
        "write_10k" => tools::write_10k(b).await,
        "cpu_per_call" => calls::cpu_per_call(b).await,
        "first_byte" => output::first_byte(b).await,
        "output_200mb" => output::output_200mb(b).await,
        "concurrent_16" => concurrency::concurrent(b, 16).await,
        "concurrent_64" => concurrency::concurrent(b, 64).await,
        "warm_ensure" => ensure::warm_ensure(b).await,
        "idle_memory" => memory::idle_memory(b).await,
        "cold_ensure" => ensure::cold_ensure(b).await,
        "cancel" => cancel::cancel(b).await,
        other => bail!("no workload named {other}; known: {}", ALL.join(", ")),
    }
}

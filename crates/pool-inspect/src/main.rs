//! `pool-inspect`: the operator's view of the sandbox pool, the image build, and the demo.
//!
//! Thin: parses arguments, calls the libraries, prints, and maps failures to exit codes
//! (0 success, 1 failure, 2 usage) with one line saying what is wrong and what to run.

mod cli;
mod commands;
mod config;
mod daemon;
mod failure;
mod table;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Logs go to stderr so that stdout stays the command's answer (`--json` included).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Clap prints its own usage errors and exits 2.
    let cli = cli::Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let (code, line) = failure::classify(&e);
            eprintln!("pool-inspect: {line}");
            ExitCode::from(code)
        }
    }
}

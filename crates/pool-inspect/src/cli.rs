//! The command line: global flags, subcommands and their arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// See and drive the sandbox pool; build the sandbox image; run the demo.
#[derive(Parser, Debug)]
#[command(
    name = "pool-inspect",
    version,
    after_help = "Exit codes: 0 success; 1 failure (daemon down, image missing, a tool call \
                  that did not exit 0, ...); 2 usage (bad flag, bad JSON, bad user id)."
)]
pub struct Cli {
    /// Settings shared by every command.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The configuration and its overrides (flags win over the file, the file over the defaults).
#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// Configuration file with `[image]`, `[pool]` and `[tools]` sections: TOML, or YAML
    /// (`.yaml`, `.yml`) or JSON (`.json`) by extension. Without one, the library's defaults.
    #[arg(
        long,
        short,
        global = true,
        env = "SANDBOX_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// The pool's name, that is its container name prefix (overrides `pool.name_prefix`).
    #[arg(long, global = true, value_name = "NAME")]
    pub pool: Option<String>,
    /// The folder holding one root per user (overrides `pool.users_root`; default
    /// `/var/lib/<pool>/users`).
    #[arg(long, global = true, value_name = "DIR")]
    pub users_root: Option<PathBuf>,
    /// The sandbox image reference (overrides `pool.image`).
    #[arg(long, global = true, value_name = "REF")]
    pub image: Option<String>,
    /// The OCI runtime of the sandboxes, as the daemon names it (overrides `pool.runtime`;
    /// `image build` builds for gVisor when it is gVisor).
    #[arg(long, global = true, value_name = "NAME")]
    pub runtime: Option<String>,
    /// Only this engine of the configuration's `[[engines]]` (default: every engine; the
    /// local one when the configuration names none).
    #[arg(long, global = true, value_name = "NAME")]
    pub engine: Option<String>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// The Docker engines of the configuration (or the local one): whether each answers, its
    /// version and this pool's sandboxes on it. Exits 1 when one does not answer.
    Engines {
        /// Print a JSON array instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// A table of this pool's sandboxes, read from the daemon.
    Ls {
        /// Print a JSON array instead of the table (and nothing else on stdout).
        #[arg(long)]
        json: bool,
    },
    /// One user's sandbox: configuration, labels, limits read back, mounts and processes.
    Show {
        /// The user id.
        user: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one tool call in USER's sandbox through `DockerExecutor`.
    ///
    /// Makes the sandbox if the user has none. Prints the result on stdout and `exit code: N (took X ms)` on stderr; exits 0 when
    /// the tool's exit code is 0 and 1 otherwise. Ctrl-C cancels the call (and kills what it
    /// started). The sandbox stays for later calls; `rm` removes it.
    Call(CallArgs),
    /// Remove this pool's sandboxes idle for longer than `pool.idle_timeout`, now.
    Reap,
    /// Remove this pool's dead or orphaned containers.
    ///
    /// Dead: not running. Orphaned: made for another configuration or image, or misnamed.
    /// These are the containers the pool itself would remove when it starts.
    Gc {
        /// Only print what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove USER's sandbox.
    Rm {
        /// The user id.
        user: String,
    },
    /// The sandbox image.
    #[command(subcommand)]
    Image(ImageCommand),
    /// The main job, step by step: a scripted agent conversation in a fresh sandbox.
    ///
    /// Builds the image if needed, runs every sandbox tool, a timeout and a cancellation in a
    /// sandbox of pool `zcbot-demo` with a temporary users root, shows the pool, then removes
    /// what it made. Uses its own embedded configuration (the global flags do not apply).
    Demo,
}

/// `call USER TOOL JSON`.
#[derive(Args, Debug)]
pub struct CallArgs {
    /// The user id.
    pub user: String,
    /// The tool: shell, run_python, read, write, edit, glob or grep.
    pub tool: String,
    /// The tool's arguments as a JSON object, e.g. '{"command": "echo hi"}'.
    pub args: String,
    /// Print output live as it arrives (shell and run_python), then the result.
    #[arg(long)]
    pub stream: bool,
    /// Seconds before the call is killed: sets the tool's `timeout` argument (shell,
    /// run_python and grep; the other tools use `tools.file_timeout`).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

/// `image ...`.
#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Build the image (and its base when missing), unless its input hash is already there.
    Build {
        /// The static runner binary to put into the image (default: `SANDBOX_RUNNER`, else
        /// the one `just runner` builds).
        #[arg(long, env = "SANDBOX_RUNNER", value_name = "FILE")]
        runner: Option<PathBuf>,
        /// Also write the built tag to this file.
        #[arg(long, value_name = "FILE")]
        tag_file: Option<PathBuf>,
    },
    /// Show the tag, input hash and whether the daemon has it.
    Status {
        /// The static runner binary that would go into the image (as for `build`).
        #[arg(long, env = "SANDBOX_RUNNER", value_name = "FILE")]
        runner: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}

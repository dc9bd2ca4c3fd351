//! `sandbox-runner`: see the library docs and `sandbox_protocol` for the contract.

use std::io::{Read, Write};

use rustix::process::{DumpableBehavior, set_dumpable_behavior};
use sandbox_protocol::{KillRequest, ToolInput, cmd, exit, frame};
use sandbox_runner::{kill, procs, serve, supervise, tools};

/// Upper bound on a file tool's JSON input (a `write` of this much content is refused anyway by
/// any sane quota); keeps a runaway request from exhausting the sandbox's memory.
const MAX_TOOL_INPUT: u64 = 256 * 1024 * 1024;

fn usage() -> ! {
    eprintln!(
        "usage: sandbox-runner run <exec id> (request on stdin) | serve <channel id> | kill <json> | tool <name> (json on stdin) | drain | ps | version"
    );
    std::process::exit(exit::BAD_ARGS);
}

fn main() {
    // Before anything else, and before any pipe exists: no other process of the sandbox user
    // may open our /proc/<pid>/fd, read our environment or trace us. The image installs this
    // binary unreadable (mode 0711), which makes the kernel start us non-dumpable already; this
    // covers a runner installed some other way (readable, as gVisor needs it).
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        eprintln!("sandbox-runner: cannot make itself non-dumpable: {e}");
        std::process::exit(exit::CANNOT_EXECUTE);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [c, exec_id] if *c == cmd::RUN => supervise::run(exec_id),
        [c, channel_id] if *c == cmd::SERVE => serve::serve(channel_id),
        [c, json] if *c == cmd::KILL => {
            let req: KillRequest = serde_json::from_str(json).unwrap_or_else(|e| {
                eprintln!("sandbox-runner kill: bad request: {e}");
                std::process::exit(exit::BAD_ARGS)
            });
            if !kill::valid_exec_id(&req.exec_id) {
                eprintln!("sandbox-runner kill: malformed exec id");
                std::process::exit(exit::BAD_ARGS);
            }
            let report = kill::kill_call(&req);
            let json = serde_json::to_vec(&report).expect("KillReport serializes");
            let _ = std::io::stdout().write_all(&frame::encode(frame::REPORT, &json));
        }
        [c, name] if *c == cmd::TOOL => {
            let tool = tools::file_tool(name).unwrap_or_else(|refused| {
                let _ = std::io::stderr().write_all(refused.stderr.as_bytes());
                std::process::exit(refused.code)
            });
            let mut raw = Vec::new();
            let read = std::io::stdin()
                .take(MAX_TOOL_INPUT + 1)
                .read_to_end(&mut raw);
            let out = match read {
                Err(e) => tools::ToolOutput::failed(format!("reading the tool input: {e}")),
                Ok(_) if raw.len() as u64 > MAX_TOOL_INPUT => {
                    tools::ToolOutput::bad_args(tool, "input larger than 256 MiB")
                }
                Ok(_) => match (
                    serde_json::from_slice::<ToolInput>(&raw),
                    std::env::current_dir(),
                ) {
                    (Err(e), _) => {
                        tools::ToolOutput::bad_args(tool, format!("input is not valid JSON: {e}"))
                    }
                    // Resolving relative paths against `/` instead would surprise everyone.
                    (_, Err(e)) => tools::ToolOutput::failed(format!(
                        "{name}: the working directory is gone: {e}"
                    )),
                    (Ok(input), Ok(cwd)) => tools::run_tool(tool, &input, &cwd),
                },
            };
            let _ = std::io::stdout().write_all(out.stdout.as_bytes());
            let _ = std::io::stderr().write_all(out.stderr.as_bytes());
            std::process::exit(out.code);
        }
        [c] if *c == cmd::DRAIN => supervise::drain(),
        [c] if *c == cmd::PS => {
            let list = procs::table(std::process::id() as i32);
            let json = serde_json::to_vec(&list).expect("ProcessList serializes");
            let _ = std::io::stdout().write_all(&frame::encode(frame::REPORT, &json));
        }
        [c] if *c == "version" => println!("sandbox-runner {}", env!("CARGO_PKG_VERSION")),
        _ => usage(),
    }
}

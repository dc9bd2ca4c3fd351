//! The supervisor: every call runs under it (`sandbox-runner run <json RunRequest>`).
//!
//! It makes itself a child subreaper, starts the command in a process group of its own with
//! the exec id in its environment, records that group in the pgid file, and relays the
//! command's stdout and stderr through pipes to the exec's streams. When the main process
//! exits it keeps relaying for at most `drain_ms` (a background process may still hold the
//! pipes), then writes a trailer with the true exit status on stderr and exits with the
//! shell-style code. Relaying, rather than handing the exec's streams to the command, is what
//! lets a call end when its main process ends even if `server &` keeps stdout open.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{WaitOptions, getpid, getuid, set_child_subreaper, wait};
use sandbox_protocol::{
    EXEC_ID_ENV, ExitStatus, KillRequest, PGID_DIR_PREFIX, Program, RUNNER_PATH, RunReport,
    RunRequest, TRAILER_MARKER, cmd, exit,
};

use crate::kill;

/// Read size of the relay; frames on the Docker stream carry at most 32 KiB anyway.
const RELAY_BUF: usize = 64 * 1024;
/// SIGKILL rounds of the backstop kill.
const BACKSTOP_ROUNDS: u32 = 8;

/// One of the exec's output streams, shared by its relay thread and the final trailer. `None`
/// once closed: after the drain, or after the reader went away (EPIPE), when output is dropped
/// so that the command never blocks on a full pipe.
type Sink = Arc<Mutex<Option<File>>>;

fn lock(sink: &Sink) -> MutexGuard<'_, Option<File>> {
    // A relay thread cannot panic while holding the lock; recover rather than abort anyway.
    sink.lock().unwrap_or_else(|e| e.into_inner())
}

fn dup_std(fd: impl AsFd) -> io::Result<File> {
    Ok(File::from(fd.as_fd().try_clone_to_owned()?))
}

fn relay(mut src: File, dst: Sink, done: mpsc::Sender<()>) {
    let mut buf = vec![0u8; RELAY_BUF];
    loop {
        match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let mut out = lock(&dst);
                if let Some(file) = out.as_mut()
                    && file.write_all(&buf[..n]).is_err()
                {
                    *out = None;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = done.send(());
}

/// Creates `/run/sbx-<uid>/<exec id>.pgid` holding `<pgid> <supervisor pid>`. Best effort: the
/// kill also finds the call by its environment tag and by descent, so a missing `/run` tmpfs
/// only loses one of three ways.
fn write_pgid_file(exec_id: &str, pgid: u32) -> Option<String> {
    let dir = format!("{PGID_DIR_PREFIX}{}", getuid().as_raw());
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Only trust a real directory of our own: /run is shared by every uid.
            let meta = fs::symlink_metadata(&dir).ok()?;
            if !meta.is_dir() || meta.uid() != getuid().as_raw() {
                return None;
            }
        }
        Err(_) => return None,
    }
    let path = kill::pgid_file(exec_id);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .ok()?;
    writeln!(file, "{pgid} {}", getpid().as_raw_nonzero()).ok()?;
    Some(path)
}

/// Reads all of stdin into a new private file under `/tmp`; `create_new` refuses to follow a
/// planted symlink.
fn stdin_to_script(exec_id: &str, suffix: &str) -> io::Result<String> {
    let path = format!("/tmp/sbx-{exec_id}{suffix}");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    let copied = io::copy(&mut io::stdin().lock(), &mut file);
    if let Err(e) = copied {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// The program a request starts, for error messages.
fn program_name(req: &RunRequest) -> String {
    match &req.program {
        Program::Argv { argv } => argv.first().cloned().unwrap_or_default(),
        Program::Script { interpreter, .. } => interpreter.first().cloned().unwrap_or_default(),
        Program::Tool { name } => format!("tool {name}"),
    }
}

fn build_command(req: &RunRequest, exec_id: &str) -> io::Result<(Command, Option<String>)> {
    Ok(match &req.program {
        Program::Argv { argv } => {
            let (prog, args) = argv
                .split_first()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
            let mut c = Command::new(prog);
            c.args(args);
            (c, None)
        }
        Program::Script {
            interpreter,
            suffix,
        } => {
            let (prog, args) = interpreter
                .split_first()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty interpreter"))?;
            if suffix.contains('/') {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad suffix"));
            }
            let script = stdin_to_script(exec_id, suffix)?;
            let mut c = Command::new(prog);
            c.args(args).arg(&script).stdin(Stdio::null());
            (c, Some(script))
        }
        Program::Tool { name } => {
            let mut c = Command::new(runner_exe());
            c.arg(cmd::TOOL).arg(name);
            (c, None)
        }
    })
}

/// This binary, wherever it is (the image puts it at [`RUNNER_PATH`]; tests run it elsewhere).
fn runner_exe() -> std::path::PathBuf {
    std::env::current_exe().unwrap_or_else(|_| RUNNER_PATH.into())
}

fn finish(err: &Sink, exec_id: &str, report: &RunReport) {
    let mut out = lock(err);
    if let Some(file) = out.as_mut() {
        let mut line = TRAILER_MARKER.to_vec();
        line.extend_from_slice(exec_id.as_bytes());
        line.push(b' ');
        line.extend_from_slice(
            serde_json::to_string(report)
                .expect("RunReport serializes")
                .as_bytes(),
        );
        line.push(b'\n');
        // One write: atomic on a pipe for a line this short, so it never interleaves.
        let _ = file.write_all(&line);
    }
    *out = None;
}

fn fail_usage(message: &str) -> ! {
    eprintln!("sandbox-runner run: {message}");
    std::process::exit(exit::BAD_ARGS);
}

/// Runs one call as described by `arg` (a JSON [`RunRequest`]) and exits with its code.
pub fn run(arg: &str) -> ! {
    let started = Instant::now();
    let req: RunRequest =
        serde_json::from_str(arg).unwrap_or_else(|e| fail_usage(&format!("bad request: {e}")));
    let exec_id = std::env::var(EXEC_ID_ENV)
        .ok()
        .filter(|id| kill::valid_exec_id(id))
        .unwrap_or_else(|| fail_usage(&format!("{EXEC_ID_ENV} is missing or malformed")));

    let out: Sink = Arc::new(Mutex::new(dup_std(io::stdout()).ok()));
    let err: Sink = Arc::new(Mutex::new(dup_std(io::stderr()).ok()));

    // Orphans of the command (double forks, `setsid` children) re-parent to us, not to the
    // container's init, so the kill can still find them as our descendants.
    let _ = set_child_subreaper(Some(getpid()));

    let spawned = build_command(&req, &exec_id).and_then(|(mut command, script)| {
        let (out_r, out_w) = pipe_with(PipeFlags::CLOEXEC)?;
        let (err_r, err_w) = pipe_with(PipeFlags::CLOEXEC)?;
        command
            .process_group(0)
            .stdout(Stdio::from(out_w))
            .stderr(Stdio::from(err_w));
        let spawned = command.spawn();
        // Dropping the Command closes our copies of the write ends, so EOF on the read ends
        // means every writer is gone.
        drop(command);
        match spawned {
            Ok(child) => Ok((child.id(), out_r, err_r, script)),
            Err(e) => {
                if let Some(s) = &script {
                    let _ = fs::remove_file(s);
                }
                Err(e)
            }
        }
    });
    let (child_pid, out_r, err_r, script) = match spawned {
        Ok(parts) => parts,
        Err(e) => {
            let code = match e.kind() {
                io::ErrorKind::NotFound => exit::NOT_FOUND,
                io::ErrorKind::InvalidInput => exit::BAD_ARGS,
                _ => exit::CANNOT_EXECUTE,
            };
            if let Some(f) = lock(&err).as_mut() {
                let name = program_name(&req);
                let _ = match e.kind() {
                    io::ErrorKind::NotFound => {
                        writeln!(f, "sandbox-runner: {name}: command not found")
                    }
                    _ => writeln!(f, "sandbox-runner: {name}: {e}"),
                };
            }
            finish(
                &err,
                &exec_id,
                &RunReport {
                    status: None,
                    spawn_error: Some(e.to_string()),
                    leaked_output: false,
                    backstop_fired: false,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                },
            );
            std::process::exit(code);
        }
    };
    let pgid_path = write_pgid_file(&exec_id, child_pid);

    // Second handles on the read ends, for the drainer when output leaks (see below).
    let spare: Option<(OwnedFd, OwnedFd)> = out_r.try_clone().ok().zip(err_r.try_clone().ok());
    let (done_tx, done_rx) = mpsc::channel();
    for (src, dst) in [(out_r, &out), (err_r, &err)] {
        let (dst, done) = (Arc::clone(dst), done_tx.clone());
        thread::spawn(move || relay(File::from(src), dst, done));
    }
    drop(done_tx);

    // Reap everything: the main child (its status is the call's) and orphans re-parented to us.
    let (status_tx, status_rx) = mpsc::channel();
    thread::spawn(move || {
        loop {
            match wait(WaitOptions::empty()) {
                Ok(Some((pid, status))) => {
                    if pid.as_raw_nonzero().get() as u32 == child_pid {
                        let _ = status_tx.send(status);
                    }
                }
                Ok(None) | Err(Errno::INTR) => continue,
                Err(_) => break,
            }
        }
    });

    let main_done = Arc::new(AtomicBool::new(false));
    let backstop_fired = Arc::new(AtomicBool::new(false));
    if let Some(deadline) = req.deadline_ms {
        let (main_done, fired, exec_id) = (
            Arc::clone(&main_done),
            Arc::clone(&backstop_fired),
            exec_id.clone(),
        );
        let grace_ms = req.grace_ms;
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(deadline).saturating_sub(started.elapsed()));
            if !main_done.load(Ordering::SeqCst) {
                fired.store(true, Ordering::SeqCst);
                kill::kill_call(
                    &KillRequest {
                        exec_id,
                        grace_ms,
                        max_rounds: BACKSTOP_ROUNDS,
                    },
                    &[],
                );
            }
        });
    }

    let status = status_rx
        .recv()
        .expect("the reaper reports the main child before it runs out of children");
    main_done.store(true, Ordering::SeqCst);
    let status = match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => ExitStatus::Exited { code },
        (None, Some(signal)) => ExitStatus::Signaled { signal },
        // wait() without WUNTRACED/WCONTINUED reports only exits and deaths.
        (None, None) => ExitStatus::Exited { code: -1 },
    };

    let drain_until = Instant::now() + Duration::from_millis(req.drain_ms);
    let mut open = 2;
    while open > 0 {
        match done_rx.recv_timeout(drain_until.saturating_duration_since(Instant::now())) {
            Ok(()) => open -= 1,
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let leaked = open > 0;
    if leaked && let Some((o, e)) = spare {
        // A background process still holds the pipes. Hand them to a drainer that reads them
        // to EOF and drops the bytes, so that process neither blocks on a full pipe nor dies
        // of SIGPIPE. The drainer carries the exec id, so a kill of this call finds it too.
        let _ = Command::new(runner_exe())
            .arg(cmd::DRAIN)
            .stdin(Stdio::from(o))
            .stdout(Stdio::from(e))
            .stderr(Stdio::null())
            .spawn();
    }
    if let Some(p) = pgid_path {
        let _ = fs::remove_file(p);
    }
    if let Some(s) = script {
        let _ = fs::remove_file(s);
    }
    *lock(&out) = None;
    finish(
        &err,
        &exec_id,
        &RunReport {
            status: Some(status),
            spawn_error: None,
            leaked_output: leaked,
            backstop_fired: backstop_fired.load(Ordering::SeqCst),
            elapsed_ms: started.elapsed().as_millis() as u64,
        },
    );
    std::process::exit(status.code());
}

/// `sandbox-runner drain`: reads fd 0 and fd 1 (both pipe read ends, see [`run`]) to EOF.
pub fn drain() -> ! {
    let a = dup_std(io::stdin());
    let b = dup_std(io::stdout());
    let handles: Vec<_> = [a, b]
        .into_iter()
        .flatten()
        .map(|mut f| thread::spawn(move || io::copy(&mut f, &mut io::sink())))
        .collect();
    for h in handles {
        let _ = h.join();
    }
    std::process::exit(0);
}

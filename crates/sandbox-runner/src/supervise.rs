//! The supervisor: every call runs under it (`sandbox-runner run <exec id>`).
//!
//! It reads the call's [`RunRequest`] from the first frame on its stdin, makes itself a child
//! subreaper, starts the command in a process group of its own with the exec id in its
//! environment, records that group in the pgid file, and relays the command's stdout and
//! stderr through pipes to the exec's stdout, as frames. When the main process exits it keeps
//! relaying for at most `drain_ms` (a background process may still hold the pipes), then
//! writes its [`RunReport`] with the true exit status as the last frame and exits with the
//! shell-style code. Relaying, rather than handing the exec's streams to the command, is what
//! lets a call end when its main process ends even if `server &` keeps stdout open, and what
//! keeps the command's bytes apart from the supervisor's word: only the supervisor writes the
//! exec's stdout, and it is out of every other process's reach (non-dumpable).
//!
//! Its stdin is the host's control channel (see [`sandbox_protocol::frame`]): the command's
//! stdin arrives as frames, and a kill frame makes the supervisor kill the call in place,
//! without a second exec. End-of-file on it means the client went away, which kills the call
//! too. Every thread and pipe is made before the command starts: once it runs it may take
//! every process slot the container has (a fork bomb under the pids limit), and killing needs
//! no new process, only signals.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{WaitOptions, WaitStatus, getpid, getuid, set_child_subreaper, wait};
use sandbox_protocol::{
    EXEC_ID_ENV, ExitStatus, KillCause, KillOrder, KillReport, KillRequest, PGID_DIR_PREFIX,
    PROTOCOL_VERSION, Program, RUNNER_PATH, RunReport, RunRequest, SpawnFailure, cmd, exit, frame,
};

use crate::kill;

/// Read size of the relays (one frame each at most) and of the control channel.
const BUF: usize = frame::MAX_PAYLOAD;
/// SIGKILL rounds of a kill the supervisor does itself.
const KILL_ROUNDS: u32 = 8;
/// How long the trailer waits for a kill in progress to report.
const KILL_REPORT_WAIT: Duration = Duration::from_secs(10);
/// Stack of the supervisor's threads: they only copy bytes and send signals.
const THREAD_STACK: usize = 256 * 1024;

/// The exec's stdout, where every frame goes, shared by the relay threads and the final
/// report. `None` once closed: after the report, or after the reader went away (EPIPE), when
/// output is dropped so that the command never blocks on a full pipe.
pub(crate) type Sink = Arc<Mutex<Option<File>>>;

/// Why nothing could start, and what to say about it.
type Failure = (SpawnFailure, String);

pub(crate) fn lock(sink: &Sink) -> MutexGuard<'_, Option<File>> {
    // A relay thread cannot panic while holding the lock; recover rather than abort anyway.
    sink.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn dup_std(fd: impl AsFd) -> io::Result<File> {
    Ok(File::from(fd.as_fd().try_clone_to_owned()?))
}

pub(crate) fn failure_of(e: &io::Error) -> SpawnFailure {
    match e.kind() {
        io::ErrorKind::NotFound => SpawnFailure::NotFound,
        io::ErrorKind::InvalidInput => SpawnFailure::BadRequest,
        io::ErrorKind::WouldBlock | io::ErrorKind::OutOfMemory => SpawnFailure::Resources,
        _ if e.raw_os_error() == Some(Errno::AGAIN.raw_os_error()) => SpawnFailure::Resources,
        _ => SpawnFailure::NotExecutable,
    }
}

fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), Failure> {
    thread::Builder::new()
        .name(name.to_owned())
        .stack_size(THREAD_STACK)
        .spawn(body)
        .map(drop)
        .map_err(|e| (failure_of(&e), format!("cannot start a thread: {e}")))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Failure> {
    pipe_with(PipeFlags::CLOEXEC).map_err(|e| {
        let e = io::Error::from(e);
        (failure_of(&e), format!("cannot make a pipe: {e}"))
    })
}

/// Writes one frame, whole: the lock keeps frames of the relays and the report from
/// interleaving.
fn send(sink: &Sink, kind: u8, payload: &[u8]) {
    let mut out = lock(sink);
    if let Some(file) = out.as_mut()
        && (file.write_all(&frame::header(kind, payload.len())).is_err()
            || file.write_all(payload).is_err())
    {
        *out = None;
    }
}

fn relay(mut src: File, kind: u8, dst: Sink, done: Sender<()>) {
    let mut buf = vec![0u8; BUF];
    loop {
        match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => send(&dst, kind, &buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = done.send(());
}

/// One frame of the control channel, as read.
enum Frame {
    Request(Vec<u8>),
    Data(Vec<u8>),
    Eof,
    Kill(KillOrder),
    /// The channel ended or broke: the client is gone.
    Closed,
}

fn read_frame(r: &mut impl Read) -> Frame {
    let mut header = [0u8; frame::HEADER];
    if r.read_exact(&mut header).is_err() {
        return Frame::Closed;
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if frame::to_runner_limit(header[0]).is_none_or(|limit| len > limit) {
        return Frame::Closed;
    }
    let mut payload = vec![0u8; len];
    if r.read_exact(&mut payload).is_err() {
        return Frame::Closed;
    }
    match header[0] {
        frame::REQUEST => Frame::Request(payload),
        frame::DATA => Frame::Data(payload),
        frame::EOF => Frame::Eof,
        frame::KILL => serde_json::from_slice(&payload).map_or(Frame::Closed, Frame::Kill),
        _ => Frame::Closed,
    }
}

/// Reads the control channel for the rest of the call: stdin data to the command, kill
/// orders to the killer.
fn control(
    mut channel: impl Read,
    mut feed: Option<Sender<Option<Vec<u8>>>>,
    orders: Sender<(KillCause, u64)>,
    grace_ms: u64,
) {
    loop {
        match read_frame(&mut channel) {
            Frame::Data(data) => {
                if let Some(f) = &feed {
                    let _ = f.send(Some(data));
                }
            }
            Frame::Eof => {
                if let Some(f) = feed.take() {
                    let _ = f.send(None);
                }
            }
            Frame::Kill(order) => {
                let _ = orders.send((KillCause::Host, order.grace_ms));
            }
            // A second request is a broken channel too.
            Frame::Request(_) | Frame::Closed => {
                let _ = orders.send((KillCause::ClientGone, grace_ms));
                return;
            }
        }
    }
}

/// Writes what the control channel carries to the command's stdin; the command sees EOF when
/// the host says so. Chunks are queued, not written by the control thread, so a command that
/// never reads its stdin cannot stop a kill order from being read.
fn feed_stdin(chunks: Receiver<Option<Vec<u8>>>, mut stdin: File) {
    while let Ok(Some(chunk)) = chunks.recv() {
        if stdin.write_all(&chunk).is_err() {
            break; // the command closed its stdin; drop the rest
        }
    }
}

/// Kills the call when ordered, or at the backstop deadline.
fn killer(
    orders: Receiver<(KillCause, u64)>,
    reports: Sender<(KillCause, KillReport)>,
    mut deadline: Option<Instant>,
    grace_ms: u64,
    exec_id: String,
    started: Arc<AtomicBool>,
) {
    loop {
        let (cause, grace_ms) = match deadline {
            Some(at) => match orders.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(order) => order,
                Err(RecvTimeoutError::Timeout) => {
                    deadline = None;
                    (KillCause::Backstop, grace_ms)
                }
                Err(RecvTimeoutError::Disconnected) => return,
            },
            None => match orders.recv() {
                Ok(order) => order,
                Err(_) => return,
            },
        };
        started.store(true, Ordering::SeqCst);
        let request = KillRequest {
            exec_id: exec_id.clone(),
            grace_ms,
            max_rounds: KILL_ROUNDS,
        };
        let _ = reports.send((cause, kill::kill_own_call(&request)));
    }
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

/// Reads the program from the control channel into a new private file under `/tmp`;
/// `create_new` refuses to follow a planted symlink.
fn receive_script(channel: &mut impl Read, exec_id: &str, suffix: &str) -> Result<String, Failure> {
    if suffix.contains('/') {
        return Err((SpawnFailure::BadRequest, "bad script suffix".to_owned()));
    }
    let path = format!("/tmp/sbx-{exec_id}{suffix}");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| {
            (
                failure_of(&e),
                format!("cannot write the program to {path}: {e}"),
            )
        })?;
    let outcome = loop {
        match read_frame(channel) {
            Frame::Data(data) => {
                if let Err(e) = file.write_all(&data) {
                    break Err((failure_of(&e), format!("cannot write the program: {e}")));
                }
            }
            Frame::Eof => break Ok(()),
            Frame::Request(_) | Frame::Kill(_) | Frame::Closed => {
                break Err((
                    SpawnFailure::BadRequest,
                    "stopped before the program arrived".to_owned(),
                ));
            }
        }
    };
    match outcome {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

/// This binary, wherever it is (the image puts it at [`RUNNER_PATH`]; tests run it elsewhere).
pub(crate) fn runner_exe() -> std::path::PathBuf {
    std::env::current_exe().unwrap_or_else(|_| RUNNER_PATH.into())
}

/// The program a request starts, for error messages.
fn program_name(req: &RunRequest) -> String {
    match &req.program {
        Program::Argv { argv } => argv.first().cloned().unwrap_or_default(),
        Program::Script { interpreter, .. } => interpreter.first().cloned().unwrap_or_default(),
        Program::Tool { name } => format!("tool {name}"),
    }
}

fn command_for(req: &RunRequest, script: Option<&str>) -> Result<Command, Failure> {
    let empty = || (SpawnFailure::BadRequest, "empty command".to_owned());
    Ok(match &req.program {
        Program::Argv { argv } => {
            let (prog, args) = argv.split_first().ok_or_else(empty)?;
            let mut c = Command::new(prog);
            c.args(args);
            c
        }
        Program::Script { interpreter, .. } => {
            let (prog, args) = interpreter.split_first().ok_or_else(empty)?;
            let mut c = Command::new(prog);
            c.args(args).args(script);
            c
        }
        Program::Tool { name } => {
            let mut c = Command::new(runner_exe());
            c.arg(cmd::TOOL).arg(name.name());
            c
        }
    })
}

/// Writes the report as the last frame and closes the exec's stdout.
fn finish(out: &Sink, report: RunReport) {
    let json = serde_json::to_vec(&report.fit()).expect("RunReport serializes");
    send(out, frame::REPORT, &json);
    *lock(out) = None;
}

/// A request the supervisor cannot take: said on its own stderr (no frame can carry it
/// before the request is known good), exit 2.
fn fail_usage(message: &str) -> ! {
    eprintln!("sandbox-runner run: {message}");
    std::process::exit(exit::BAD_ARGS);
}

/// The request, from the first frame of the control channel.
fn read_request(channel: &mut impl Read) -> RunRequest {
    let Frame::Request(json) = read_frame(channel) else {
        fail_usage("the control channel did not start with a request");
    };
    let req: RunRequest =
        serde_json::from_slice(&json).unwrap_or_else(|e| fail_usage(&format!("bad request: {e}")));
    if req.version != PROTOCOL_VERSION {
        fail_usage(&format!(
            "the host speaks protocol {}, this runner {PROTOCOL_VERSION}: rebuild the image (just image)",
            req.version
        ));
    }
    if req.too_late() {
        fail_usage("the request came after its deadline; not starting it");
    }
    req
}

/// Runs call `exec_id`, whose request arrives on stdin, and exits with its code.
pub fn run(exec_id: &str) -> ! {
    let started = Instant::now();
    if !kill::valid_exec_id(exec_id) {
        fail_usage("malformed exec id");
    }
    let stdin = dup_std(io::stdin()).unwrap_or_else(|e| fail_usage(&format!("no stdin: {e}")));
    let mut channel = BufReader::with_capacity(BUF, stdin);
    let req = read_request(&mut channel);
    if req.exec_id != exec_id {
        fail_usage("the request is for another call");
    }
    let out: Sink = Arc::new(Mutex::new(dup_std(io::stdout()).ok()));
    let Err((failure, message)) = supervise(&req, exec_id, channel, &out, started);
    let name = program_name(&req);
    let said = match failure {
        SpawnFailure::NotFound => format!("sandbox-runner: {name}: command not found\n"),
        _ => format!("sandbox-runner: {name}: {message}\n"),
    };
    send(&out, frame::STDERR, said.as_bytes());
    let report = RunReport {
        status: None,
        spawn_error: Some(message),
        spawn_failure: Some(failure),
        kill: None,
        leaked_output: false,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    finish(&out, report);
    std::process::exit(failure.exit_code());
}

/// Everything from setting up to exiting; returns only when the command could not start.
fn supervise(
    req: &RunRequest,
    exec_id: &str,
    mut channel: BufReader<File>,
    out: &Sink,
    started: Instant,
) -> Result<std::convert::Infallible, Failure> {
    // Orphans of the command (double forks, `setsid` children) re-parent to us, not to the
    // container's init, so the kill can still find them as our descendants.
    let _ = set_child_subreaper(Some(getpid()));
    if let Some(dir) = &req.cwd {
        std::env::set_current_dir(dir).map_err(|e| {
            (
                SpawnFailure::NoWorkingDirectory,
                format!("working directory {dir}: {e}"),
            )
        })?;
    }
    let script = match &req.program {
        Program::Script { suffix, .. } => Some(receive_script(&mut channel, exec_id, suffix)?),
        _ => None,
    };
    let remove_script = || {
        if let Some(s) = &script {
            let _ = fs::remove_file(s);
        }
    };
    let prepared = prepare(req, exec_id, out, channel, script.is_some(), started);
    let (mut command, mut ready) =
        match prepared.and_then(|p| Ok((command_for(req, script.as_deref())?, p))) {
            Ok((c, p)) => (c, p),
            Err(e) => {
                remove_script();
                return Err(e);
            }
        };
    command
        .envs(req.env.iter().filter_map(|e| e.split_once('=')))
        .env(EXEC_ID_ENV, exec_id)
        .process_group(0)
        .stdin(
            ready
                .child_stdin
                .take()
                .map_or_else(Stdio::null, Stdio::from),
        )
        .stdout(Stdio::from(
            ready.child_stdout.take().expect("prepared once"),
        ))
        .stderr(Stdio::from(
            ready.child_stderr.take().expect("prepared once"),
        ));
    let spawned = command.spawn();
    // Dropping the Command closes our copies of the pipe ends the child got, so EOF on the
    // read ends means every writer is gone.
    drop(command);
    let child = match spawned {
        Ok(child) => child.id(),
        Err(e) => {
            remove_script();
            return Err((failure_of(&e), e.to_string()));
        }
    };
    let pgid_path = write_pgid_file(exec_id, child);
    let status = reap_until(child);

    // A kill in progress finishes first, so its report goes into the trailer.
    let kill = if ready.kill_started.load(Ordering::SeqCst) {
        ready.reports.recv_timeout(KILL_REPORT_WAIT).ok()
    } else {
        ready.reports.try_recv().ok()
    };
    let drain_until = Instant::now() + Duration::from_millis(req.drain_ms);
    let mut open = 2;
    while open > 0 {
        match ready
            .relays_done
            .recv_timeout(drain_until.saturating_duration_since(Instant::now()))
        {
            Ok(()) => open -= 1,
            Err(_) => break,
        }
    }
    let leaked = open > 0;
    if leaked && let Some((o, e)) = ready.spare.take() {
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
    remove_script();
    finish(
        out,
        RunReport {
            status: Some(status),
            spawn_error: None,
            spawn_failure: None,
            kill,
            leaked_output: leaked,
            elapsed_ms: started.elapsed().as_millis() as u64,
        },
    );
    std::process::exit(status.code());
}

/// What [`prepare`] made: the child's ends of the pipes, and the threads' channels.
struct Ready {
    child_stdin: Option<OwnedFd>,
    child_stdout: Option<OwnedFd>,
    child_stderr: Option<OwnedFd>,
    /// Second handles on the read ends, for the drainer.
    spare: Option<(OwnedFd, OwnedFd)>,
    relays_done: Receiver<()>,
    reports: Receiver<(KillCause, KillReport)>,
    kill_started: Arc<AtomicBool>,
}

/// Makes every pipe and starts every thread, before the command exists.
fn prepare(
    req: &RunRequest,
    exec_id: &str,
    out: &Sink,
    channel: impl Read + Send + 'static,
    stdin_is_script: bool,
    started: Instant,
) -> Result<Ready, Failure> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let spare = out_r.try_clone().ok().zip(err_r.try_clone().ok());
    let (done_tx, relays_done) = mpsc::channel();
    for (name, src, kind) in [
        ("relay-out", out_r, frame::STDOUT),
        ("relay-err", err_r, frame::STDERR),
    ] {
        let (dst, done) = (Arc::clone(out), done_tx.clone());
        spawn_thread(name, move || relay(File::from(src), kind, dst, done))?;
    }
    let (child_stdin, feed) = if stdin_is_script {
        (None, None)
    } else {
        let (in_r, in_w) = pipe()?;
        let (feed_tx, feed_rx) = mpsc::channel();
        spawn_thread("stdin", move || feed_stdin(feed_rx, File::from(in_w)))?;
        (Some(in_r), Some(feed_tx))
    };
    let (orders_tx, orders_rx) = mpsc::channel();
    let (reports_tx, reports) = mpsc::channel();
    let kill_started = Arc::new(AtomicBool::new(false));
    let deadline = req
        .deadline_ms
        .map(|ms| started + Duration::from_millis(ms));
    let (grace_ms, id, flag) = (req.grace_ms, exec_id.to_owned(), Arc::clone(&kill_started));
    spawn_thread("killer", move || {
        killer(orders_rx, reports_tx, deadline, grace_ms, id, flag)
    })?;
    spawn_thread("control", move || {
        control(channel, feed, orders_tx, grace_ms)
    })?;
    Ok(Ready {
        child_stdin,
        child_stdout: Some(out_w),
        child_stderr: Some(err_w),
        spare,
        relays_done,
        reports,
        kill_started,
    })
}

/// Reaps children (orphans re-parented to us included) until the main child exits.
fn reap_until(child: u32) -> ExitStatus {
    loop {
        match wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid.as_raw_nonzero().get() as u32 == child => {
                return exit_status(status);
            }
            Ok(_) | Err(Errno::INTR) => continue,
            // No children left although the main one was never reaped: cannot happen while it
            // is our child; say 255 ("unknown") rather than loop forever.
            Err(_) => return ExitStatus::Exited { code: u8::MAX },
        }
    }
}

pub(crate) fn exit_status(status: WaitStatus) -> ExitStatus {
    let byte = |n: i32| u8::try_from(n).unwrap_or(u8::MAX);
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => ExitStatus::Exited { code: byte(code) },
        (None, Some(signal)) => ExitStatus::Signaled {
            signal: byte(signal),
        },
        // wait() without WUNTRACED/WCONTINUED reports only exits and deaths.
        (None, None) => ExitStatus::Exited { code: u8::MAX },
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_and_a_cut_channel_is_closed() {
        let mut bytes = frame::encode(frame::REQUEST, b"{}");
        bytes.extend(frame::encode(frame::DATA, b"abc"));
        bytes.extend(frame::encode(frame::EOF, b""));
        bytes.extend(frame::encode(frame::KILL, br#"{"grace_ms":5}"#));
        bytes.extend(&frame::encode(frame::DATA, b"cut")[..4]);
        let mut r = bytes.as_slice();
        assert!(matches!(read_frame(&mut r), Frame::Request(d) if d == b"{}"));
        assert!(matches!(read_frame(&mut r), Frame::Data(d) if d == b"abc"));
        assert!(matches!(read_frame(&mut r), Frame::Eof));
        assert!(matches!(
            read_frame(&mut r),
            Frame::Kill(KillOrder { grace_ms: 5 })
        ));
        assert!(matches!(read_frame(&mut r), Frame::Closed));
        let over = frame::header(frame::DATA, frame::MAX_PAYLOAD + 1);
        assert!(matches!(read_frame(&mut over.as_slice()), Frame::Closed));
        let output = frame::encode(frame::STDOUT, b"not for the runner");
        assert!(matches!(read_frame(&mut output.as_slice()), Frame::Closed));
    }
}

//! The channel: `sandbox-runner serve <channel id>`, one long-lived process per sandbox that
//! runs many calls over its stdin and stdout (see [`sandbox_protocol::channel`]).
//!
//! It only routes. Each call's frames are the per-call protocol: a command gets its own
//! supervisor (`sandbox-runner run <exec id>`, a child of this process) that reads the call's
//! frames on its stdin and writes the call's frames on its stdout, exactly as over an exec of
//! its own, so every guarantee of that path (process group, tag, subreaper, kill, drain,
//! report) holds per call. `read`, `write` and `edit` run here on a thread instead: they read
//! or write one file each, with their own size limits, so they need no process of their own.
//!
//! One thread polls the host's stdin and every supervisor's pipes, so a supervisor that stops
//! reading (a command stopped it) holds up nobody else; frames to the host are written whole
//! under one lock. Every call's request is acknowledged before anything of it starts: a call
//! without its acknowledgement never ran, and the host may run it elsewhere.
//!
//! When the host goes away (end of stdin) the supervisors' stdin closes with it, which kills
//! their calls, and the process exits. When a supervisor dies without its report, this process
//! kills what its call left and reports that itself.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
use rustix::io::Errno;
use rustix::process::{WaitOptions, getpid, waitpid};
use sandbox_protocol::{
    EXEC_ID_ENV, ExitStatus, Hello, KillCause, KillRequest, PROTOCOL_VERSION, Program, RunReport,
    RunRequest, SpawnFailure, Tool, ToolInput, channel, cmd, exit, frame,
};

use crate::supervise::{Sink, dup_std, exit_status, failure_of, lock, runner_exe};
use crate::{kill, tools};

/// File tools that run on a thread of this process: one file each, bounded by their own limits.
const IN_PROCESS_TOOLS: [Tool; 3] = [Tool::Read, Tool::Write, Tool::Edit];
/// Upper bound on an in-process tool's input (as `sandbox-runner tool`).
const MAX_TOOL_INPUT: usize = 256 * 1024 * 1024;
/// Read size of the pipes.
const BUF: usize = frame::MAX_PAYLOAD;
/// How often the loop looks for supervisors that died without a word.
const REAP_EVERY: Duration = Duration::from_millis(20);
/// How often the host hears that this process is alive.
const BEAT_EVERY: Duration = Duration::from_millis(channel::BEAT_EVERY_MS);
/// SIGKILL rounds of a kill this process does for a supervisor that died.
const KILL_ROUNDS: u32 = 8;

/// Writes one frame of call `call`, whole, to the host.
fn send(out: &Sink, call: u32, kind: u8, payload: &[u8]) {
    let mut sink = lock(out);
    if let Some(file) = sink.as_mut()
        && file.write_all(&channel::wrap(call, kind, payload)).is_err()
    {
        *sink = None;
    }
}

fn report(out: &Sink, call: u32, report: RunReport) {
    let json = serde_json::to_vec(&report.fit()).expect("RunReport serializes");
    send(out, call, frame::REPORT, &json);
}

fn failed(failure: SpawnFailure, message: String) -> RunReport {
    RunReport {
        status: None,
        spawn_error: Some(message),
        spawn_failure: Some(failure),
        kill: None,
        leaked_output: false,
        elapsed_ms: 0,
    }
}

fn nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = fcntl_getfl(&fd)?;
    fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?;
    Ok(())
}

/// A call whose command runs under a supervisor of its own.
struct Supervised {
    exec_id: String,
    pid: i32,
    /// The supervisor's stdin, and the frames waiting for it (it may be stopped).
    to_child: Option<File>,
    pending: Vec<u8>,
    from_child: Option<File>,
    frames: frame::Decoder,
    reported: bool,
}

/// A file tool running here: its input so far, and whether its report went out.
struct InProcess {
    name: Tool,
    cwd: Option<String>,
    input: Vec<u8>,
    reported: Arc<AtomicBool>,
    started: Instant,
}

enum Call {
    Supervised(Supervised),
    InProcess(InProcess),
}

/// Runs the channel `channel_id` until the host goes away.
pub fn serve(channel_id: &str) -> ! {
    if !kill::valid_exec_id(channel_id) {
        eprintln!("sandbox-runner serve: malformed channel id");
        std::process::exit(exit::BAD_ARGS);
    }
    let out: Sink = Arc::new(Mutex::new(dup_std(io::stdout()).ok()));
    let hello = Hello {
        version: PROTOCOL_VERSION,
        channel: channel_id.to_owned(),
        pid: getpid().as_raw_nonzero().get().unsigned_abs(),
    };
    {
        let json = serde_json::to_vec(&hello).expect("Hello serializes");
        let mut sink = lock(&out);
        if let Some(file) = sink.as_mut()
            && file
                .write_all(&frame::encode(channel::HELLO, &json))
                .is_err()
        {
            std::process::exit(exit::FAILED);
        }
    }
    let stdin = dup_std(io::stdin()).unwrap_or_else(|_| std::process::exit(exit::FAILED));
    if nonblocking(&stdin).is_err() {
        std::process::exit(exit::FAILED);
    }
    Server {
        out,
        stdin,
        host: frame::Decoder::new(channel::to_runner_limit),
        calls: HashMap::new(),
        tools: HashMap::new(),
        died: HashMap::new(),
        taken: 0,
    }
    .run()
}

struct Server {
    out: Sink,
    stdin: File,
    host: frame::Decoder,
    calls: HashMap<u32, Call>,
    /// In-process tools that may still report (a kill must answer for them).
    tools: HashMap<u32, Arc<AtomicBool>>,
    /// Exit statuses of supervisors reaped before their stdout closed.
    died: HashMap<i32, ExitStatus>,
    /// Calls taken so far.
    taken: u64,
}

impl Server {
    fn run(mut self) -> ! {
        let mut buf = vec![0u8; BUF];
        let mut beat = Instant::now();
        loop {
            if beat.elapsed() >= BEAT_EVERY {
                beat = Instant::now();
                let mut sink = lock(&self.out);
                if let Some(file) = sink.as_mut()
                    && file.write_all(&frame::encode(channel::BEAT, &[])).is_err()
                {
                    *sink = None;
                }
            }
            self.reap();
            let (mut fds, owners) = self.poll_set();
            let waiting = self
                .calls
                .values()
                .any(|c| matches!(c, Call::Supervised(s) if s.from_child.is_none()));
            let wait = if waiting { REAP_EVERY } else { BEAT_EVERY };
            let timeout = Timespec {
                tv_sec: 0,
                tv_nsec: wait.as_nanos() as i64,
            };
            match poll(&mut fds, Some(&timeout)) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(_) => std::process::exit(exit::FAILED),
            }
            let ready: Vec<(Owner, PollFlags)> = fds
                .iter()
                .zip(&owners)
                .map(|(fd, owner)| (*owner, fd.revents()))
                .filter(|(_, r)| !r.is_empty())
                .collect();
            drop(fds);
            for (owner, revents) in ready {
                match owner {
                    Owner::Host => self.read_host(&mut buf),
                    Owner::Output(call) => self.read_supervisor(call, &mut buf),
                    Owner::Input(call) if revents.contains(PollFlags::OUT) => {
                        self.write_supervisor(call)
                    }
                    Owner::Input(call) => self.drop_input(call),
                }
            }
        }
    }

    fn poll_set(&self) -> (Vec<PollFd<'_>>, Vec<Owner>) {
        let mut fds = vec![PollFd::new(&self.stdin, PollFlags::IN)];
        let mut owners = vec![Owner::Host];
        for (&id, call) in &self.calls {
            let Call::Supervised(s) = call else { continue };
            if let Some(f) = &s.from_child {
                fds.push(PollFd::new(f, PollFlags::IN));
                owners.push(Owner::Output(id));
            }
            if let Some(f) = &s.to_child
                && !s.pending.is_empty()
            {
                fds.push(PollFd::new(f, PollFlags::OUT));
                owners.push(Owner::Input(id));
            }
        }
        (fds, owners)
    }

    /// Reaps finished supervisors; one that ended without its report gets its call killed.
    fn reap(&mut self) {
        while let Ok(Some((pid, status))) = waitpid(None, WaitOptions::NOHANG) {
            self.died
                .insert(pid.as_raw_nonzero().get(), exit_status(status));
        }
        let gone: Vec<u32> = self
            .calls
            .iter()
            .filter_map(|(&id, c)| match c {
                Call::Supervised(s) if s.from_child.is_none() => Some(id),
                _ => None,
            })
            .collect();
        for id in gone {
            let Some(Call::Supervised(s)) = self.calls.get(&id) else {
                continue;
            };
            if s.reported {
                self.died.remove(&s.pid);
                self.calls.remove(&id);
                continue;
            }
            let Some(status) = self.died.remove(&s.pid) else {
                continue;
            };
            let exec_id = s.exec_id.clone();
            self.calls.remove(&id);
            let out = Arc::clone(&self.out);
            // The kill takes rounds of signals and waits: not on the loop.
            thread::spawn(move || {
                let found = kill::kill_call(&KillRequest {
                    exec_id,
                    grace_ms: 0,
                    max_rounds: KILL_ROUNDS,
                });
                let r = RunReport {
                    status: Some(status),
                    spawn_error: None,
                    spawn_failure: None,
                    kill: Some((KillCause::SupervisorGone, found)),
                    leaked_output: false,
                    elapsed_ms: 0,
                };
                report(&out, id, r);
            });
        }
    }

    fn read_host(&mut self, buf: &mut [u8]) {
        loop {
            match self.stdin.read(buf) {
                // The host went away: the supervisors' stdin closes with this process.
                Ok(0) => std::process::exit(exit::OK),
                Ok(n) => self.host.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => std::process::exit(exit::FAILED),
            }
        }
        loop {
            match self.host.next_frame() {
                Ok(Some((_, payload))) => match channel::unwrap(&payload, frame::to_runner_limit) {
                    Ok((call, kind, inner)) => self.route(call, kind, inner),
                    Err(_) => std::process::exit(exit::BAD_ARGS),
                },
                Ok(None) => break,
                // A broken channel is a host gone wrong: end it (the calls die with it).
                Err(_) => std::process::exit(exit::BAD_ARGS),
            }
        }
    }

    fn route(&mut self, id: u32, kind: u8, payload: &[u8]) {
        if kind == frame::REQUEST {
            if self.calls.contains_key(&id) || self.tools.contains_key(&id) {
                std::process::exit(exit::BAD_ARGS);
            }
            return self.open(id, payload);
        }
        match self.calls.get_mut(&id) {
            Some(Call::Supervised(s)) if s.to_child.is_some() => {
                s.pending.extend_from_slice(&frame::encode(kind, payload));
            }
            Some(Call::Supervised(_)) => {}
            Some(Call::InProcess(t)) => match kind {
                frame::DATA if t.input.len() + payload.len() <= MAX_TOOL_INPUT => {
                    t.input.extend_from_slice(payload);
                }
                frame::DATA => {
                    let result = tools::ToolOutput::bad_args(t.name, "input larger than 256 MiB");
                    let (done, started) = (Arc::clone(&t.reported), t.started);
                    self.calls.remove(&id);
                    tool_answer(&self.out, id, &done, started, &result);
                }
                frame::EOF => {
                    if let Some(Call::InProcess(t)) = self.calls.remove(&id) {
                        self.start_tool(id, t);
                    }
                }
                _ => self.kill_tool(id),
            },
            // A kill for a tool thread that runs on, or a frame after the call ended.
            None if kind == frame::KILL => self.kill_tool(id),
            None => {}
        }
    }

    /// A new call: acknowledged first, then started.
    fn open(&mut self, id: u32, json: &[u8]) {
        send(&self.out, id, frame::ACK, &[]);
        // The count shows as the process's name (`ps -o comm`): what `pool-inspect show` reads,
        // from the host, without starting anything in the container.
        self.taken += 1;
        if let Ok(name) = std::ffi::CString::new(format!("served:{}", self.taken)) {
            let _ = rustix::thread::set_name(&name);
        }
        let req: RunRequest = match serde_json::from_slice(json) {
            Ok(req) => req,
            Err(e) => {
                let r = failed(SpawnFailure::BadRequest, format!("bad request: {e}"));
                return report(&self.out, id, r);
            }
        };
        if req.version != PROTOCOL_VERSION || !kill::valid_exec_id(&req.exec_id) {
            let why = format!(
                "the host speaks protocol {}, this runner {PROTOCOL_VERSION}, or the exec id is malformed",
                req.version
            );
            return report(&self.out, id, failed(SpawnFailure::BadRequest, why));
        }
        if req.too_late() {
            let why = "the request came after its deadline; not starting it".to_owned();
            return report(&self.out, id, failed(SpawnFailure::BadRequest, why));
        }
        if let Program::Tool { name } = req.program
            && IN_PROCESS_TOOLS.contains(&name)
        {
            let call = InProcess {
                name,
                cwd: req.cwd.clone(),
                input: Vec::new(),
                reported: Arc::new(AtomicBool::new(false)),
                started: Instant::now(),
            };
            self.tools.retain(|_, done| !done.load(Ordering::SeqCst));
            self.tools.insert(id, Arc::clone(&call.reported));
            self.calls.insert(id, Call::InProcess(call));
            return;
        }
        match self.spawn_supervisor(&req, json) {
            Ok(s) => {
                self.calls.insert(id, Call::Supervised(s));
            }
            Err(e) => {
                let r = failed(failure_of(&e), format!("cannot start a supervisor: {e}"));
                report(&self.out, id, r);
            }
        }
    }

    fn spawn_supervisor(&self, req: &RunRequest, json: &[u8]) -> io::Result<Supervised> {
        let mut child = Command::new(runner_exe())
            .arg(cmd::RUN)
            .arg(&req.exec_id)
            .env(EXEC_ID_ENV, &req.exec_id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        let to_child = child.stdin.take().map(|p| File::from(OwnedFd::from(p)));
        let from_child = child.stdout.take().map(|p| File::from(OwnedFd::from(p)));
        for f in to_child.iter().chain(&from_child) {
            nonblocking(f)?;
        }
        Ok(Supervised {
            exec_id: req.exec_id.clone(),
            pid,
            to_child,
            pending: frame::encode(frame::REQUEST, json),
            from_child,
            frames: frame::Decoder::new(frame::to_host_limit),
            reported: false,
        })
    }

    fn read_supervisor(&mut self, id: u32, buf: &mut [u8]) {
        let Some(Call::Supervised(s)) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(file) = s.from_child.as_mut() else {
            return;
        };
        let mut closed = false;
        loop {
            match file.read(buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => s.frames.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        loop {
            match s.frames.next_frame() {
                Ok(Some((kind, payload))) => {
                    // Only one report, and nothing after it.
                    if s.reported {
                        closed = true;
                        break;
                    }
                    s.reported |= kind == frame::REPORT;
                    send(&self.out, id, kind, &payload);
                }
                Ok(None) => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            s.from_child = None;
            s.to_child = None;
            s.pending.clear();
        }
    }

    fn write_supervisor(&mut self, id: u32) {
        let Some(Call::Supervised(s)) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(file) = s.to_child.as_mut() else {
            return;
        };
        match file.write(&s.pending) {
            Ok(n) => {
                s.pending.drain(..n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                s.to_child = None;
                s.pending.clear();
            }
        }
    }

    fn drop_input(&mut self, id: u32) {
        if let Some(Call::Supervised(s)) = self.calls.get_mut(&id) {
            s.to_child = None;
            s.pending.clear();
        }
    }

    fn start_tool(&mut self, id: u32, t: InProcess) {
        let out = Arc::clone(&self.out);
        let spawned = thread::Builder::new()
            .name(format!("tool-{id}"))
            .spawn(move || match working_dir(&t) {
                Ok(cwd) => {
                    let result = match serde_json::from_slice::<ToolInput>(&t.input) {
                        Err(e) => tools::ToolOutput::bad_args(
                            t.name,
                            format!("input is not valid JSON: {e}"),
                        ),
                        Ok(input) => tools::run_tool(t.name, &input, &cwd),
                    };
                    tool_answer(&out, id, &t.reported, t.started, &result);
                }
                Err(message) => {
                    if !t.reported.swap(true, Ordering::SeqCst) {
                        let said = format!("sandbox-runner: tool {}: {message}\n", t.name);
                        send(&out, id, frame::STDERR, said.as_bytes());
                        report(&out, id, failed(SpawnFailure::NoWorkingDirectory, message));
                    }
                }
            });
        if let Err(e) = spawned {
            let r = failed(failure_of(&e), format!("cannot start a thread: {e}"));
            report(&self.out, id, r);
        }
    }

    /// A kill for an in-process tool: it cannot be stopped, but its call ends now, and what it
    /// says later is dropped.
    fn kill_tool(&mut self, id: u32) {
        let Some(done) = self.tools.get(&id) else {
            return;
        };
        if !done.swap(true, Ordering::SeqCst) {
            self.calls.remove(&id);
            let r = RunReport {
                status: Some(ExitStatus::Signaled { signal: 9 }),
                spawn_error: None,
                spawn_failure: None,
                kill: Some((KillCause::Host, Default::default())),
                leaked_output: false,
                elapsed_ms: 0,
            };
            report(&self.out, id, r);
        }
    }
}

/// The call's working directory, checked as the supervisor checks it.
fn working_dir(t: &InProcess) -> Result<PathBuf, String> {
    let cwd = PathBuf::from(t.cwd.as_deref().unwrap_or("/"));
    match std::fs::metadata(&cwd) {
        Ok(meta) if meta.is_dir() => Ok(cwd),
        Ok(_) => Err(format!(
            "working directory {}: not a directory",
            cwd.display()
        )),
        Err(e) => Err(format!("working directory {}: {e}", cwd.display())),
    }
}

/// An in-process tool's output and report, unless a kill answered for it first.
fn tool_answer(
    out: &Sink,
    id: u32,
    done: &AtomicBool,
    started: Instant,
    result: &tools::ToolOutput,
) {
    if done.swap(true, Ordering::SeqCst) {
        return;
    }
    if !result.stdout.is_empty() {
        for chunk in result.stdout.as_bytes().chunks(frame::MAX_PAYLOAD) {
            send(out, id, frame::STDOUT, chunk);
        }
    }
    for chunk in result.stderr.as_bytes().chunks(frame::MAX_PAYLOAD) {
        send(out, id, frame::STDERR, chunk);
    }
    report(
        out,
        id,
        RunReport {
            status: Some(ExitStatus::Exited {
                code: u8::try_from(result.code).unwrap_or(u8::MAX),
            }),
            spawn_error: None,
            spawn_failure: None,
            kill: None,
            leaked_output: false,
            elapsed_ms: started.elapsed().as_millis() as u64,
        },
    );
}

/// Who an entry of the poll set belongs to.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Host,
    Output(u32),
    Input(u32),
}

//! [`Channel`]: many calls of one sandbox over one long-lived exec of `sandbox-runner serve`.
//!
//! One exec costs the daemon and runc 40-50 ms; a call over the channel costs the command
//! itself. Every call still runs under a supervisor of its own inside the container (or, for
//! `read`, `write` and `edit`, on a thread of the serve process), speaking the per-call
//! protocol, so its guarantees are the exec path's: process group and tag, the kill and its
//! report, caps, the sink, true exit codes, the drain.
//!
//! What is new is the channel's own failure: the serve process killed or stopped by a command.
//! Every request is acknowledged before anything of it starts. A call whose channel goes down
//! before the acknowledgement never ran: [`Channel::run`] says [`ExecError::ChannelDown`] and
//! the caller runs it through an exec of its own. One whose channel goes down after it is
//! lost (its supervisor saw the channel close and killed it), never run twice. The serve
//! process beats while it runs; a channel silent for [`SILENCE_LIMIT`] is wedged (a command
//! stopped its serve process, say): it is killed (serve process and every call on it, through
//! a second exec) and closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bytes::Bytes;
use futures_util::StreamExt;
use sandbox_protocol::{Hello, KillOrder, PROTOCOL_VERSION, channel, cmd, frame};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::ExecClient;
use crate::capture::{Frames, StreamKind, diagnostic};
use crate::client::{ExecInput, ExecOutput, Reported, STREAM_BUFFER, millis, reported, within};
use crate::error::ExecError;
use crate::outcome::{LostReason, Outcome, Termination};
use crate::request::{ExecRequest, OutputChunk, new_exec_id};
use crate::stopping::{POST_KILL_WAIT, Step, Stop, Stopping};

/// How long a new channel may take to say hello: 5 s.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a channel may be silent (no beat, no frame, while the host waits for one) before it
/// counts as wedged: 3 s, a dozen beats (a sandbox short of CPU still beats in time).
pub const SILENCE_LIMIT: Duration = Duration::from_secs(3);
/// Frames queued for one call between the channel's reader and the call (each at most 64 KiB):
/// a call that does not keep up slows its channel, it does not grow the service.
const CALL_QUEUE: usize = 64;

/// One frame of one call, as the reader hands it over.
enum Inbound {
    Ack,
    Frame(u8, Bytes),
}

struct Inner {
    id: String,
    container: String,
    user: Option<String>,
    exec: ExecClient,
    to_serve: mpsc::UnboundedSender<Vec<u8>>,
    calls: Mutex<HashMap<u32, mpsc::Sender<Inbound>>>,
    next_call: AtomicU32,
    served: AtomicU64,
    /// Cancelled when the channel is down for good.
    closed: CancellationToken,
    /// Since when the reader has been waiting for the serve process to say something; `None`
    /// while it is busy handing frames to calls (a slow call is no silent channel).
    waiting: Mutex<Option<Instant>>,
}

impl Inner {
    fn close(&self, why: &str) {
        if !self.closed.is_cancelled() {
            debug!(channel = %self.id, container = %self.container, why, "channel closed");
        }
        self.closed.cancel();
        // The calls' receivers see the end of their queues.
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn send(&self, call: u32, kind: u8, payload: &[u8]) -> bool {
        self.to_serve
            .send(channel::wrap(call, kind, payload))
            .is_ok()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer ends with the last sender: the serve process reads end-of-file and exits.
        self.closed.cancel();
    }
}

/// An open channel into one sandbox. Cheap to clone; the channel closes (and its serve
/// process exits) when the last clone is dropped.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.inner.id)
            .field("container", &self.inner.container)
            .field("open", &self.is_open())
            .field("served", &self.served())
            .finish()
    }
}

impl Channel {
    /// Starts `sandbox-runner serve <id>` in `container` as `user` and waits for its hello.
    #[tracing::instrument(name = "channel_open", skip(exec), fields(container = %container))]
    pub async fn open(
        exec: &ExecClient,
        container: &str,
        user: Option<&str>,
        id: &str,
    ) -> Result<Channel, ExecError> {
        let down = |why: String| ExecError::ChannelDown {
            container: container.to_owned(),
            channel: id.to_owned(),
            why,
        };
        let docker = exec.docker();
        let config = exec.runner_exec([cmd::SERVE, id], user, true);
        let start = async {
            let created = docker.create_exec(container, config).await.map_err(|e| {
                ExecError::classify("create exec", container, e, |container, source| {
                    ExecError::CreateExec { container, source }
                })
            })?;
            let options = StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: Some(STREAM_BUFFER),
            };
            match docker.start_exec(&created.id, Some(options)).await {
                Ok(StartExecResults::Attached { output, input }) => Ok((output, input)),
                Ok(StartExecResults::Detached) => Err(down("started detached".to_owned())),
                Err(e) => Err(down(format!("starting it: {e}"))),
            }
        };
        let (mut output, input) = tokio::time::timeout(OPEN_TIMEOUT, start)
            .await
            .map_err(|_| down("the daemon did not start it in time".to_owned()))??;
        let mut frames = frame::Decoder::new(channel::to_host_limit);
        let hello = tokio::time::timeout(OPEN_TIMEOUT, async {
            let mut complaints = diagnostic();
            while let Some(item) = output.next().await {
                match item.map_err(|e| down(format!("reading it: {e}")))? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        frames.push(&message);
                        match frames.next_frame() {
                            Ok(Some((channel::HELLO, json))) => {
                                return serde_json::from_slice::<Hello>(&json)
                                    .map_err(|e| down(format!("a malformed hello: {e}")));
                            }
                            Ok(Some((kind, _))) => {
                                return Err(down(format!("a frame of kind {kind} before hello")));
                            }
                            Ok(None) => {}
                            Err(e) => return Err(down(format!("not a channel: {e}"))),
                        }
                    }
                    LogOutput::StdErr { message } => complaints.push(&message),
                    LogOutput::StdIn { .. } => {}
                }
            }
            Err(down(format!(
                "it ended before its hello: {}",
                complaints.to_string_lossy().trim()
            )))
        })
        .await
        .map_err(|_| down("no hello in time".to_owned()))??;
        if hello.version != PROTOCOL_VERSION || hello.channel != id {
            return Err(down(format!(
                "it speaks protocol {} for channel {}, not {PROTOCOL_VERSION} for {id}",
                hello.version, hello.channel
            )));
        }
        let (to_serve, from_calls) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            id: id.to_owned(),
            container: container.to_owned(),
            user: user.map(str::to_owned),
            exec: exec.clone(),
            to_serve,
            calls: Mutex::default(),
            next_call: AtomicU32::new(1),
            served: AtomicU64::new(0),
            closed: CancellationToken::new(),
            waiting: Mutex::new(Some(Instant::now())),
        });
        tokio::spawn(write_loop(input, from_calls, inner.closed.clone()));
        tokio::spawn(read_loop(
            output,
            frames,
            Arc::downgrade(&inner),
            inner.closed.clone(),
        ));
        tokio::spawn(watchdog(Arc::downgrade(&inner), inner.closed.clone()));
        debug!(channel = id, pid = hello.pid, "channel open");
        Ok(Channel { inner })
    }

    /// Its id (`sandbox-runner serve <id>` in the container).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Whether it still takes calls.
    pub fn is_open(&self) -> bool {
        !self.inner.closed.is_cancelled()
    }

    /// Calls it has run to their end.
    pub fn served(&self) -> u64 {
        self.inner.served.load(Ordering::Relaxed)
    }

    /// Closes it: the serve process reads end-of-file and exits, and so do the calls still on
    /// it (their supervisors kill them).
    pub fn close(&self) {
        self.inner.close("closed by its owner");
    }

    /// Runs `req` over the channel. [`ExecError::ChannelDown`] means nothing of it ran (the
    /// channel was down, or went down before taking it): run it through an exec instead.
    /// Everything else is an [`Outcome`], as [`ExecClient::run`] gives.
    #[tracing::instrument(name = "channel_call", skip_all, fields(channel = %self.inner.id, exec_id))]
    pub async fn run(&self, req: ExecRequest) -> Result<Outcome, ExecError> {
        let inner = &self.inner;
        let started = Instant::now();
        let deadline = req.deadline_from(started);
        let exec_id = new_exec_id();
        tracing::Span::current().record("exec_id", exec_id.as_str());
        let down = |why: &str| ExecError::ChannelDown {
            container: inner.container.clone(),
            channel: inner.id.clone(),
            why: why.to_owned(),
        };
        let not_started = |termination| Outcome {
            exec_id: exec_id.clone(),
            ..Outcome::not_started(termination, started.elapsed())
        };
        if req.cancel.is_cancelled() {
            return Ok(not_started(Termination::Cancelled));
        }
        if req.user.is_some() && req.user != inner.user {
            return Err(down("the call runs as another user than the channel"));
        }
        let request = inner.exec.run_request(&req, &exec_id, deadline);
        let request = serde_json::to_vec(&request).expect("RunRequest serializes");
        if request.len() > frame::MAX_REQUEST {
            return Err(ExecError::RequestTooLarge {
                container: inner.container.clone(),
                bytes: request.len(),
                limit: frame::MAX_REQUEST,
            });
        }
        let call = inner.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel(CALL_QUEUE);
        {
            let mut calls = inner.calls.lock().unwrap_or_else(|e| e.into_inner());
            if inner.closed.is_cancelled() {
                return Err(down("closed"));
            }
            calls.insert(call, tx);
        }
        let mut guard = CallGuard {
            inner,
            call,
            grace: inner.exec.options().kill_grace,
            done: false,
        };
        let sent = inner.send(call, frame::REQUEST, &request)
            && req
                .stdin
                .as_deref()
                .unwrap_or_default()
                .chunks(frame::MAX_PAYLOAD)
                .all(|chunk| inner.send(call, frame::DATA, chunk))
            && inner.send(call, frame::EOF, &[]);
        if !sent {
            guard.done = true;
            return Err(down("closed before the request went out"));
        }

        let sink = req.sink.clone();
        let mut emit = |stream: StreamKind, bytes: &Bytes| {
            if let Some(sink) = &sink {
                sink.on_output(OutputChunk {
                    stream,
                    bytes: bytes.clone(),
                });
            }
        };
        let mut frames = Frames::new(req.caps);
        let mut acked = false;
        let mut lost = false;
        let mut stopping = Stopping::default();
        let wake = tokio::time::Instant::from_std(deadline);
        let deadline_passes = tokio::time::sleep_until(wake);
        tokio::pin!(deadline_passes);
        let grace = inner.exec.options().kill_grace;
        let kill_order = || {
            let order = KillOrder {
                grace_ms: millis(grace),
            };
            let json = serde_json::to_vec(&order).expect("KillOrder serializes");
            inner.send(call, frame::KILL, &json);
        };

        loop {
            tokio::select! {
                biased;
                _ = req.cancel.cancelled(), if !stopping.is_stopping() => {
                    if !acked {
                        // Not taken yet: it never starts (the guard's kill order follows the
                        // request, and a request past its deadline is refused).
                        return Ok(not_started(Termination::Cancelled));
                    }
                    kill_order();
                    stopping.begin(Stop::Cancelled, grace);
                }
                _ = &mut deadline_passes, if !stopping.is_stopping() => {
                    if !acked {
                        return Ok(not_started(Termination::TimedOut));
                    }
                    kill_order();
                    stopping.begin(Stop::TimedOut, grace);
                }
                step = stopping.next() => match step {
                    Step::Escalate => {
                        warn!("the in-band kill did not end the call; killing through a second exec");
                        stopping.kill_with(Box::pin(inner.exec.kill(&inner.container, inner.user.as_deref(), &exec_id)));
                    }
                    Step::Killed => {}
                    Step::Unreached => break,
                    Step::GaveUp => {
                        warn!("no report after the kill; giving up on it");
                        break;
                    }
                },
                item = rx.recv() => match item {
                    Some(Inbound::Ack) => acked = true,
                    Some(Inbound::Frame(kind, payload)) => {
                        frames.frame(kind, payload, &mut emit);
                        if frames.report.is_some() || frames.broken.is_some() {
                            break;
                        }
                    }
                    None if acked => {
                        lost = true;
                        break;
                    }
                    None => {
                        guard.done = true;
                        return Err(down("closed before it took the call"));
                    }
                },
            }
        }
        guard.done = frames.report.is_some();
        let (stop, mut kill) = stopping.finish();

        let Frames {
            stdout,
            stderr,
            report,
            broken,
            ..
        } = frames;
        let Reported {
            leaked_output,
            spawn_error,
            kill: own_kill,
        } = reported(&inner.container, report.as_ref(), stop)?;
        kill = own_kill.or(kill);
        let termination = match (stop.map(|(s, _)| s), report) {
            (Some(s), _) => s.termination(),
            (None, Some(report)) => {
                inner
                    .exec
                    .termination(&req, wake, &inner.container, &report)
                    .await
            }
            (None, None) => {
                let reason = match broken {
                    Some(detail) => LostReason::RunnerBroke { detail },
                    None => LostReason::ChannelLost,
                };
                debug!(lost, ?reason, "the call's channel went down under it");
                match within(&req, wake, inner.exec.container_lost(&inner.container)).await {
                    Ok(Some(lost)) => lost,
                    Ok(None) => {
                        // Its supervisor may have ended before the channel did, leaving what
                        // the call started with nothing to answer to: a lost call is killed.
                        kill = Some(
                            inner
                                .exec
                                .kill(&inner.container, inner.user.as_deref(), &exec_id)
                                .await,
                        );
                        Termination::SandboxLost { reason }
                    }
                    Err(s) => s.termination(),
                }
            }
        };
        inner.served.fetch_add(1, Ordering::Relaxed);
        Ok(Outcome {
            exec_id,
            termination,
            stdout,
            stderr,
            duration: started.elapsed(),
            kill,
            leaked_output,
            spawn_error,
        })
    }
}

/// Ends a call on the channel: a call dropped before its report is killed (in-band; its
/// supervisor would also kill it when the channel closes), and its queue goes away.
struct CallGuard<'a> {
    inner: &'a Inner,
    call: u32,
    grace: Duration,
    done: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.inner
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.call);
        if !self.done {
            let order = KillOrder {
                grace_ms: millis(self.grace),
            };
            let json = serde_json::to_vec(&order).expect("KillOrder serializes");
            self.inner.send(self.call, frame::KILL, &json);
        }
    }
}

/// Writes the calls' frames to the serve process until the channel closes.
async fn write_loop(
    mut input: ExecInput,
    mut frames: mpsc::UnboundedReceiver<Vec<u8>>,
    closed: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = closed.cancelled() => break,
            next = frames.recv() => match next {
                Some(bytes) => {
                    if input.write_all(&bytes).await.is_err() || input.flush().await.is_err() {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    closed.cancel();
    let _ = input.shutdown().await;
}

/// Reads the serve process's frames and hands each to its call, until the channel ends.
async fn read_loop(
    mut output: ExecOutput,
    mut frames: frame::Decoder,
    inner: std::sync::Weak<Inner>,
    closed: CancellationToken,
) {
    let mut complaints = diagnostic();
    let why = 'read: loop {
        // Frames already decoded (the rest of the hello's chunk) first.
        loop {
            let (kind, payload) = match frames.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => break 'read format!("not a channel any more: {e}"),
            };
            if kind == channel::BEAT {
                continue;
            }
            if kind != channel::CALL {
                break 'read format!("a frame of kind {kind}");
            }
            let (call, kind, inner_payload) =
                match channel::unwrap(&payload, channel::to_host_inner_limit) {
                    Ok(parts) => parts,
                    Err(e) => break 'read format!("a broken call frame: {e}"),
                };
            let Some(strong) = inner.upgrade() else {
                break 'read "dropped".to_owned();
            };
            let tx = strong
                .calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&call)
                .cloned();
            drop(strong);
            let item = match kind {
                frame::ACK => Inbound::Ack,
                kind => Inbound::Frame(kind, Bytes::copy_from_slice(inner_payload)),
            };
            // A call that went away (dropped, or done) has no queue: its frames are dropped.
            if let Some(tx) = tx {
                let _ = tx.send(item).await;
            }
        }
        let waiting = |since: Option<Instant>| {
            if let Some(strong) = inner.upgrade() {
                *strong.waiting.lock().unwrap_or_else(|e| e.into_inner()) = since;
            }
        };
        waiting(Some(Instant::now()));
        let next = tokio::select! {
            _ = closed.cancelled() => None,
            item = output.next() => Some(item),
        };
        waiting(None);
        let Some(item) = next else {
            break 'read "closed".to_owned();
        };
        {
            match item {
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    frames.push(&message);
                }
                Some(Ok(LogOutput::StdErr { message })) => complaints.push(&message),
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => break 'read format!("reading it: {e}"),
                None => break 'read "the serve process ended".to_owned(),
            }
        }
    };
    if complaints.total() > 0 {
        warn!(said = %complaints.to_string_lossy(), "the serve process complained");
    }
    if let Some(inner) = inner.upgrade() {
        inner.close(&why);
    } else {
        closed.cancel();
    }
}

/// Kills and closes a channel whose serve process went silent (stopped, or stuck): every call
/// on it dies with it (their supervisors descend from it), and a call it had not acknowledged
/// yet is free to run through an exec.
async fn watchdog(inner: std::sync::Weak<Inner>, closed: CancellationToken) {
    loop {
        tokio::select! {
            _ = closed.cancelled() => return,
            _ = tokio::time::sleep(SILENCE_LIMIT / 3) => {}
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let silent = strong
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(Duration::ZERO, |since| since.elapsed());
        if silent < SILENCE_LIMIT {
            continue;
        }
        warn!(channel = %strong.id, container = %strong.container, silent_ms = silent.as_millis() as u64, "the channel went silent; killing it");
        let summary = strong
            .exec
            .kill(&strong.container, strong.user.as_deref(), &strong.id)
            .await;
        debug!(?summary, "killed the silent channel");
        drop(strong);
        // What it said before it died reaches the calls first: the stream ends on its own.
        let _ = tokio::time::timeout(POST_KILL_WAIT, closed.cancelled()).await;
        if let Some(strong) = inner.upgrade() {
            strong.close("silent");
        }
        return;
    }
}

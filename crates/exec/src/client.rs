//! [`ExecClient`]: one call in one container, from exec create to [`Outcome`].

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerStateStatusEnum, ExecConfig};
use bytes::Bytes;
use futures_util::StreamExt;
use sandbox_protocol::{
    EXEC_ID_ENV, KillOrder, KillReport, KillRequest, PROTOCOL_VERSION, RUNNER_PATH, RunReport,
    RunRequest, SpawnFailure, cmd, frame,
};
use tokio::io::AsyncWriteExt;
use tracing::{debug, warn};

use crate::capture::{Captured, Frames, StreamKind, diagnostic};
use crate::docker::{is_not_found, is_unreachable, oom_logged, parse_rfc3339};
use crate::error::{ExecError, KillError, ReportError, error_chain};
use crate::future::{BoxFuture, maybe};
use crate::outcome::{KillSummary, LostReason, Outcome, Termination};
use crate::request::{ExecRequest, OutputChunk, new_exec_id};
use crate::stopping::{Step, Stop, Stopping};

/// Connects to the daemon named by `DOCKER_HOST` (unix, tcp or http), or the local default
/// socket, and negotiates the API version.
///
/// Negotiation matters: this crate's bollard defaults to API 1.53 while Docker 20.10 speaks
/// 1.41. bollard 0.21 sends unversioned paths so it works either way today, but the next
/// release pins the version in the path and would get HTTP 400 without this step.
pub async fn connect() -> Result<Docker, ExecError> {
    let docker = Docker::connect_with_defaults().map_err(ExecError::Connect)?;
    docker.negotiate_version().await.map_err(ExecError::Connect)
}

/// Default bound on waiting for output after the main process exits: 500 ms.
pub const DEFAULT_DRAIN: Duration = Duration::from_millis(500);
/// Default grace between SIGTERM and SIGKILL in the server-side kill: 300 ms.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_millis(300);
/// Default bound on SIGKILL rounds of the server-side kill: 8.
pub const DEFAULT_KILL_ROUNDS: u32 = 8;
/// Default extra time after the deadline before the runner's own backstop kills the call,
/// should the host's kill never arrive (the service died): 2 s.
pub const DEFAULT_BACKSTOP_SLACK: Duration = Duration::from_secs(2);

/// Upper bound on the kill exec itself (it has its own rounds and grace inside).
const KILL_EXEC_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound on the daemon creating and starting the kill exec.
const KILL_EXEC_START_TIMEOUT: Duration = Duration::from_secs(2);
/// Read buffer of the attached stream (frames are at most 32 KiB).
pub(crate) const STREAM_BUFFER: usize = 64 * 1024;
/// Backoff for `inspect_exec` right after a stream ended without a report: the daemon may not
/// have recorded the exit yet.
const INSPECT_BACKOFF_MS: [u64; 6] = [0, 5, 10, 20, 40, 80];
/// How often a running exec's container is looked at: under some runtimes (gVisor) the daemon
/// never ends an exec's stream when its container dies, so the stream alone would hold the
/// call until its deadline. Calls shorter than this never ask.
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// Checks of the container's state after a call ended by SIGKILL (575 ms in all; a force
/// removal showed up after about 40 ms here, later on a loaded machine).
const CONTAINER_SETTLE_MS: [u64; 6] = [0, 25, 50, 100, 150, 250];

/// Settings shared by every call of an [`ExecClient`].
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Path of the runner in the container.
    pub runner_path: String,
    /// Bound on waiting for output after the main process exits.
    pub drain: Duration,
    /// Grace between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Bound on SIGKILL rounds.
    pub kill_rounds: u32,
    /// Extra time after the deadline before the runner's own backstop kill.
    pub backstop_slack: Duration,
}

impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            runner_path: RUNNER_PATH.to_owned(),
            drain: DEFAULT_DRAIN,
            kill_grace: DEFAULT_KILL_GRACE,
            kill_rounds: DEFAULT_KILL_ROUNDS,
            backstop_slack: DEFAULT_BACKSTOP_SLACK,
        }
    }
}

/// Runs commands in containers. Cheap to clone; holds an injected Docker client.
#[derive(Debug, Clone)]
pub struct ExecClient {
    docker: Docker,
    options: ExecOptions,
}

pub(crate) type ExecOutput =
    Pin<Box<dyn futures_util::Stream<Item = Result<LogOutput, DockerError>> + Send>>;
pub(crate) type ExecInput = Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// What a call's report says besides its exit status.
pub(crate) struct Reported {
    pub(crate) leaked_output: bool,
    pub(crate) spawn_error: Option<String>,
    /// The supervisor's own kill, when the call was stopped.
    pub(crate) kill: Option<KillSummary>,
}

/// Reads the parts of `report` every transport treats alike; a sandbox out of processes is
/// an error (nothing of the call ran, a fresh sandbox is the way out).
pub(crate) fn reported(
    container: &str,
    report: Option<&RunReport>,
    stop: Option<(Stop, Instant)>,
) -> Result<Reported, ExecError> {
    if let Some(r) = report
        && r.spawn_failure == Some(SpawnFailure::Resources)
    {
        return Err(ExecError::SandboxUnusable {
            container: container.to_owned(),
            reason: r.spawn_error.clone().unwrap_or_default(),
        });
    }
    let kill = match (stop, report.and_then(|r| r.kill.clone())) {
        (Some((_, at)), Some((cause, found))) => {
            debug!(?cause, "the supervisor killed the call");
            Some(KillSummary {
                report: Some(found),
                error: None,
                elapsed: at.elapsed(),
            })
        }
        _ => None,
    };
    Ok(Reported {
        leaked_output: report.is_some_and(|r| r.leaked_output),
        spawn_error: report.and_then(|r| r.spawn_error.clone()),
        kill,
    })
}

/// One call of [`ExecClient::run`], as its steps share it.
#[derive(Clone, Copy)]
struct Call<'a> {
    container: &'a str,
    req: &'a ExecRequest,
    exec_id: &'a str,
    wake: tokio::time::Instant,
}

/// What a call's stream left: its frames, the supervisor's complaints, and how the stream
/// was stopped, if it was.
struct Streamed {
    frames: Frames,
    complaints: Captured,
    stop: Option<(Stop, Instant)>,
    kill: Option<KillSummary>,
    stream_err: Option<DockerError>,
    lost: Option<Termination>,
}

/// The parts of the outcome besides its termination.
struct Concluded {
    stdout: Captured,
    stderr: Captured,
    kill: Option<KillSummary>,
    leaked_output: bool,
    spawn_error: Option<String>,
}

impl ExecClient {
    /// A client with default options.
    pub fn new(docker: Docker) -> Self {
        Self::with_options(docker, ExecOptions::default())
    }

    /// A client with these options.
    pub fn with_options(docker: Docker, options: ExecOptions) -> Self {
        Self { docker, options }
    }

    /// The Docker client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The options.
    pub fn options(&self) -> &ExecOptions {
        &self.options
    }

    /// Runs `req` in `container` and waits for its outcome.
    ///
    /// Errors are failures before the command started (no such container, daemon down);
    /// everything after, including a sandbox lost mid-call, is an [`Outcome`]. The deadline
    /// and the cancellation cover the whole call: a daemon that does not answer the exec's
    /// creation, or the questions asked after the call, makes a timed-out or cancelled outcome,
    /// not a wait.
    #[tracing::instrument(name = "exec", skip_all, fields(container = %container, exec_id))]
    pub async fn run(&self, container: &str, req: ExecRequest) -> Result<Outcome, ExecError> {
        let started = Instant::now();
        let deadline = req.deadline_from(started);
        let exec_id = new_exec_id();
        tracing::Span::current().record("exec_id", exec_id.as_str());
        let not_started = |termination| Outcome {
            exec_id: exec_id.clone(),
            ..Outcome::not_started(termination, started.elapsed())
        };
        if req.cancel.is_cancelled() {
            return Ok(not_started(Termination::Cancelled));
        }
        let request = self.run_request(&req, &exec_id, deadline);
        let request = serde_json::to_vec(&request).expect("RunRequest serializes");
        if request.len() > frame::MAX_REQUEST {
            return Err(ExecError::RequestTooLarge {
                container: container.to_owned(),
                bytes: request.len(),
                limit: frame::MAX_REQUEST,
            });
        }
        let wake = tokio::time::Instant::from_std(deadline);
        // Dropping a start that is under way closes the exec's stdin: a supervisor that the
        // daemon starts after all reads end-of-file instead of a request, and exits.
        let (docker_exec_id, output, input) = tokio::select! {
            biased;
            _ = req.cancel.cancelled() => return Ok(not_started(Termination::Cancelled)),
            _ = tokio::time::sleep_until(wake) => return Ok(not_started(Termination::TimedOut)),
            attached = self.start_supervisor(container, &exec_id, &req) => attached?,
        };
        let call = Call {
            container,
            req: &req,
            exec_id: &exec_id,
            wake,
        };
        let streamed = self.stream(&call, output, input, request).await;
        let (termination, streamed) = self.conclude(&call, &docker_exec_id, streamed).await?;
        let outcome = Outcome {
            exec_id,
            termination,
            stdout: streamed.stdout,
            stderr: streamed.stderr,
            duration: started.elapsed(),
            kill: streamed.kill,
            leaked_output: streamed.leaked_output,
            spawn_error: streamed.spawn_error,
        };
        debug!(
            termination = ?outcome.termination,
            duration_ms = outcome.duration.as_millis() as u64,
            stdout_bytes = outcome.stdout.total(),
            stderr_bytes = outcome.stderr.total(),
            "exec finished"
        );
        Ok(outcome)
    }

    /// The call while it streams: its output read, its stdin fed, its deadline and cancel
    /// turned into a kill (in-band first, then through a second exec), the container watched.
    /// One `select!`, biased with the stops first: a flood of output must not delay a cancel.
    async fn stream(
        &self,
        call: &Call<'_>,
        mut output: ExecOutput,
        input: ExecInput,
        request: Vec<u8>,
    ) -> Streamed {
        let Call {
            container,
            req,
            exec_id,
            wake,
        } = *call;
        let (orders, orders_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut feeder: Option<BoxFuture<'_, std::io::Result<()>>> =
            Some(Box::pin(feed(input, request, req.stdin.clone(), orders_rx)));
        let sink = req.sink.clone();
        let emit = |stream: StreamKind, bytes: &Bytes| {
            if let Some(sink) = &sink {
                sink.on_output(OutputChunk {
                    stream,
                    bytes: bytes.clone(),
                });
            }
        };
        let mut frames = Frames::new(req.caps);
        // The supervisor's own stderr: only its complaints about a request it could not take.
        let mut complaints = diagnostic();
        let mut stopping = Stopping::default();
        let mut stream_err: Option<DockerError> = None;
        let mut stream_done = false;
        let mut watch: Option<BoxFuture<'_, Termination>> =
            Some(Box::pin(self.watch_container(container)));
        let mut lost: Option<Termination> = None;
        let deadline_passes = tokio::time::sleep_until(wake);
        tokio::pin!(deadline_passes);

        loop {
            if stream_done && !stopping.killing() {
                break;
            }
            tokio::select! {
                biased;
                _ = req.cancel.cancelled(), if !stopping.is_stopping() => {
                    debug!("cancelled; killing the call");
                    self.order_kill(&orders);
                    stopping.begin(Stop::Cancelled, self.options.kill_grace);
                }
                _ = &mut deadline_passes, if !stopping.is_stopping() => {
                    debug!("deadline passed; killing the call");
                    self.order_kill(&orders);
                    stopping.begin(Stop::TimedOut, self.options.kill_grace);
                }
                step = stopping.next() => match step {
                    // The supervisor did not end the call (stopped, or dead without closing the
                    // stream): kill through a second exec.
                    Step::Escalate => {
                        warn!("the in-band kill did not end the call; killing through a second exec");
                        stopping.kill_with(Box::pin(self.kill_call(container, req.user.as_deref(), exec_id)));
                    }
                    Step::Killed => {}
                    Step::Unreached => break,
                    Step::GaveUp => {
                        warn!("output stream still open after the kill; giving up on it");
                        break;
                    }
                },
                gone = maybe(&mut watch), if !stopping.is_stopping() && !stream_done => {
                    warn!(termination = ?gone, "the container went away while its exec's stream stayed open");
                    lost = Some(gone);
                    break;
                }
                res = maybe(&mut feeder) => {
                    feeder = None;
                    if let Err(e) = res {
                        // The call ended, or the command closed stdin before reading all of it.
                        debug!(error = %e, "control channel closed");
                    }
                }
                item = output.next(), if !stream_done => match item {
                    Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                        frames.push(&message, emit);
                    }
                    Some(Ok(LogOutput::StdErr { message })) => complaints.push(&message),
                    Some(Ok(LogOutput::StdIn { .. })) => {}
                    Some(Err(e)) => {
                        stream_err = Some(e);
                        stream_done = true;
                    }
                    None => stream_done = true,
                },
            }
        }
        let (stop, kill) = stopping.finish();
        Streamed {
            frames,
            complaints,
            stop,
            kill,
            stream_err,
            lost,
        }
    }

    /// How the call ended, from what it streamed: the supervisor's report, else the stop, the
    /// container's loss, or what the daemon says of the exec.
    async fn conclude(
        &self,
        call: &Call<'_>,
        docker_exec_id: &str,
        streamed: Streamed,
    ) -> Result<(Termination, Concluded), ExecError> {
        let (container, req) = (call.container, call.req);
        let Streamed {
            frames,
            complaints,
            stop,
            mut kill,
            stream_err,
            lost,
        } = streamed;
        let Frames {
            stdout,
            mut stderr,
            report,
            broken,
            unframed,
            ..
        } = frames;
        if complaints.total() > 0 {
            warn!(said = %complaints.to_string_lossy(), "the supervisor complained");
            stderr.push(complaints.to_string_lossy().as_bytes());
        }
        let Reported {
            leaked_output,
            spawn_error,
            kill: own_kill,
        } = reported(container, report.as_ref(), stop)?;
        kill = own_kill.or(kill);
        let termination = match (stop.map(|(s, _)| s), report, lost) {
            (Some(s), _, _) => s.termination(),
            (None, Some(report), _) => self.termination(req, call.wake, container, &report).await,
            (None, None, Some(lost)) => lost,
            (None, None, None) => {
                match within(
                    req,
                    call.wake,
                    self.diagnose(container, docker_exec_id, stream_err),
                )
                .await
                {
                    Err(s) => s.termination(),
                    // The runtime's "cannot execute": the runner never started.
                    Ok(Termination::Exited { code: 126 }) => {
                        let said = [&unframed, &complaints]
                            .map(|c| c.to_string_lossy().trim().to_owned())
                            .join(" ");
                        return Err(ExecError::SandboxUnusable {
                            container: container.to_owned(),
                            reason: said.trim().to_owned(),
                        });
                    }
                    Ok(lost @ Termination::SandboxLost { .. }) => lost,
                    Ok(_) if broken.is_some() => Termination::SandboxLost {
                        reason: LostReason::RunnerBroke {
                            detail: broken.unwrap_or_default(),
                        },
                    },
                    Ok(died) => {
                        // The supervisor died without a word (a process of the call killed it)
                        // while the container runs: nothing bounds what the call started any
                        // more, so it is killed now.
                        kill = Some(
                            self.kill_call(container, req.user.as_deref(), call.exec_id)
                                .await,
                        );
                        died
                    }
                }
            }
        };
        Ok((
            termination,
            Concluded {
                stdout,
                stderr,
                kill,
                leaked_output,
                spawn_error,
            },
        ))
    }

    /// How a call that reported ended. The kernel SIGKILLs every process when a container
    /// dies, and the supervisor may still get its report out: a `kill -9` is told apart from
    /// that by asking the daemon (within the call's deadline and cancel).
    pub(crate) async fn termination(
        &self,
        req: &ExecRequest,
        deadline: tokio::time::Instant,
        container: &str,
        report: &RunReport,
    ) -> Termination {
        match from_report(report) {
            Termination::Signaled { signal: 9 } => {
                match within(req, deadline, self.container_lost(container)).await {
                    Ok(lost) => lost.unwrap_or(Termination::Signaled { signal: 9 }),
                    Err(_) => Termination::Signaled { signal: 9 },
                }
            }
            other => other,
        }
    }

    /// The request the supervisor gets as its first frame.
    pub(crate) fn run_request(
        &self,
        req: &ExecRequest,
        exec_id: &str,
        deadline: Instant,
    ) -> RunRequest {
        let left = deadline.saturating_duration_since(Instant::now());
        RunRequest {
            version: PROTOCOL_VERSION,
            exec_id: exec_id.to_owned(),
            program: req.program.clone(),
            env: req
                .env
                .iter()
                .filter(|e| !e.starts_with(&format!("{EXEC_ID_ENV}=")))
                .cloned()
                .collect(),
            cwd: req.working_dir.clone(),
            drain_ms: millis(self.options.drain),
            deadline_ms: Some(millis(left + self.options.backstop_slack)),
            grace_ms: millis(self.options.kill_grace),
            start_by_unix_ms: SystemTime::now()
                .checked_add(left)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(millis),
        }
    }

    /// Creates and starts the supervisor's exec, attached.
    async fn start_supervisor(
        &self,
        container: &str,
        exec_id: &str,
        req: &ExecRequest,
    ) -> Result<(String, ExecOutput, ExecInput), ExecError> {
        // Stdin is the runner's control channel (the request travels in it, then the
        // command's stdin as frames, and the kill order). The command's environment travels in
        // the request; the exec carries the tag only.
        let config = ExecConfig {
            env: Some(vec![format!("{EXEC_ID_ENV}={exec_id}")]),
            ..self.runner_exec([cmd::RUN, exec_id], req.user.as_deref(), true)
        };
        self.start_attached(container, config).await
    }

    /// Kills every process of the call `exec_id` in `container`, running the kill as `user`
    /// (it must be the call's user: with all capabilities dropped, only the same uid may
    /// signal the call's processes or read their environment).
    pub async fn kill(&self, container: &str, user: Option<&str>, exec_id: &str) -> KillSummary {
        self.kill_call(container, user, exec_id).await
    }

    /// Sends the kill order down the control channel (a supervisor that has ended reads it
    /// nowhere, which is fine).
    fn order_kill(&self, orders: &tokio::sync::mpsc::UnboundedSender<KillOrder>) {
        let _ = orders.send(KillOrder {
            grace_ms: millis(self.options.kill_grace),
        });
    }

    async fn kill_call(&self, container: &str, user: Option<&str>, exec_id: &str) -> KillSummary {
        let started = Instant::now();
        let request = KillRequest {
            exec_id: exec_id.to_owned(),
            grace_ms: millis(self.options.kill_grace),
            max_rounds: self.options.kill_rounds,
        };
        let result =
            tokio::time::timeout(KILL_EXEC_TIMEOUT, self.kill_exec(container, user, &request))
                .await
                .unwrap_or(Err(KillError::TimedOut));
        let summary = match result {
            Ok(report) => KillSummary {
                report: Some(report),
                error: None,
                elapsed: started.elapsed(),
            },
            Err(error) => KillSummary {
                report: None,
                error: Some(error),
                elapsed: started.elapsed(),
            },
        };
        if summary.nothing_left() {
            debug!(
                exec_id,
                elapsed_ms = summary.elapsed.as_millis() as u64,
                "killed the call"
            );
        } else {
            warn!(exec_id, report = ?summary.report, error = summary.error.as_ref().map(ToString::to_string), "the kill left processes or failed");
        }
        summary
    }

    async fn kill_exec(
        &self,
        container: &str,
        user: Option<&str>,
        request: &KillRequest,
    ) -> Result<KillReport, KillError> {
        let request = serde_json::to_string(request).expect("KillRequest serializes");
        let config = self.runner_exec([cmd::KILL, &request], user, false);
        // A daemon that does not answer must not hold the call: the supervisor's own backstop
        // still kills in place.
        let start = self.start_attached(container, config);
        let (_, output, _) = tokio::time::timeout(KILL_EXEC_START_TIMEOUT, start)
            .await
            .map_err(|_| KillError::StartTimedOut)?
            .map_err(|e| KillError::Start(error_chain(&e)))?;
        Ok(read_kill_report(output).await?)
    }

    /// The stream ended without the supervisor's report: the container went away, the daemon
    /// did, the supervisor itself was killed, or the runner never started. Find out which.
    async fn diagnose(
        &self,
        container: &str,
        docker_exec_id: &str,
        stream_err: Option<DockerError>,
    ) -> Termination {
        if let Some(e) = stream_err.filter(is_unreachable) {
            return lost_daemon(&e);
        }
        let mut exit_code = None;
        for ms in INSPECT_BACKOFF_MS {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            match self.docker.inspect_exec(docker_exec_id).await {
                // Exec records go with their container.
                Err(e) if is_not_found(&e) => {
                    return Termination::SandboxLost {
                        reason: LostReason::ContainerRemoved,
                    };
                }
                Err(e) if is_unreachable(&e) => return lost_daemon(&e),
                Err(e) => {
                    warn!(error = %e, "inspecting the exec failed");
                    break;
                }
                Ok(ins) => {
                    exit_code = ins.exit_code;
                    if ins.running != Some(true) {
                        break;
                    }
                }
            }
        }
        if let Some(lost) = self.container_lost(container).await {
            return lost;
        }
        // The container runs but the supervisor ended without a word: something killed it
        // (the kernel's OOM killer, or a process of the call). Report what Docker recorded.
        match exit_code {
            Some(code) if (129..=192).contains(&code) => Termination::Signaled {
                signal: (code - 128) as i32,
            },
            Some(code) => Termination::Exited {
                code: i32::try_from(code).unwrap_or(-1),
            },
            None => Termination::Exited { code: -1 },
        }
    }
}

impl ExecClient {
    /// An exec of the runner with `args` (its subcommand and what follows) as `user` (`None`:
    /// the container's), stdout and stderr attached, stdin too when it is a control channel.
    /// It starts at the root, which always exists: the runner enters a call's working
    /// directory itself (see `RunRequest::cwd`).
    pub(crate) fn runner_exec<'a>(
        &self,
        args: impl IntoIterator<Item = &'a str>,
        user: Option<&str>,
        stdin: bool,
    ) -> ExecConfig {
        let mut cmd = vec![self.options.runner_path.clone()];
        cmd.extend(args.into_iter().map(str::to_owned));
        ExecConfig {
            attach_stdin: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(cmd),
            user: user.map(str::to_owned),
            working_dir: Some("/".to_owned()),
            ..Default::default()
        }
    }

    /// Creates and starts the exec `config` in `container`, attached: Docker's id of it, its
    /// output and its stdin. Daemon answers are classified by status code.
    pub(crate) async fn start_attached(
        &self,
        container: &str,
        config: ExecConfig,
    ) -> Result<(String, ExecOutput, ExecInput), ExecError> {
        let created = self
            .docker
            .create_exec(container, config)
            .await
            .map_err(|e| {
                ExecError::classify("create exec", container, e, |container, source| {
                    ExecError::CreateExec { container, source }
                })
            })?;
        let docker_exec_id = created.id;
        let start = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: Some(STREAM_BUFFER),
        };
        let attached = self
            .docker
            .start_exec(&docker_exec_id, Some(start))
            .await
            .map_err(|e| {
                let id = docker_exec_id.clone();
                ExecError::classify("start exec", container, e, move |container, source| {
                    ExecError::StartExec {
                        container,
                        docker_exec_id: id,
                        source,
                    }
                })
            })?;
        match attached {
            StartExecResults::Attached { output, input } => Ok((docker_exec_id, output, input)),
            StartExecResults::Detached => Err(ExecError::NotAttached {
                container: container.to_owned(),
                docker_exec_id,
            }),
        }
    }

    /// Resolves when the container is found gone or stopped, looked at every [`WATCH_EVERY`].
    /// A stop seen this way settles like any other.
    async fn watch_container(&self, container: &str) -> Termination {
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            if let Some((lost, _)) = self.container_state(container).await {
                return self.container_lost(container).await.unwrap_or(lost);
            }
        }
    }

    /// `Some(SandboxLost)` when the container is gone, stopped or unreachable, with when it
    /// stopped by the daemon's clock, when the daemon says.
    async fn container_state(&self, container: &str) -> Option<(Termination, Option<SystemTime>)> {
        match self.docker.inspect_container(container, None).await {
            Err(e) if is_not_found(&e) => Some((
                Termination::SandboxLost {
                    reason: LostReason::ContainerRemoved,
                },
                None,
            )),
            Err(e) if is_unreachable(&e) => Some((lost_daemon(&e), None)),
            Err(e) => {
                warn!(error = %e, "inspecting the container failed");
                None
            }
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                let reason = if state.status == Some(ContainerStateStatusEnum::REMOVING) {
                    LostReason::ContainerRemoved
                } else {
                    LostReason::ContainerStopped {
                        exit_code: state.exit_code,
                        oom_killed: state.oom_killed.unwrap_or(false),
                    }
                };
                let finished = state.finished_at.as_deref().and_then(parse_rfc3339);
                (state.running != Some(true))
                    .then_some((Termination::SandboxLost { reason }, finished))
            }
        }
    }

    /// Like [`Self::container_state`], but gives the daemon a moment to notice a container
    /// that is dying right now (its processes die before its state changes).
    /// A container seen killed (137, not by the OOM killer) may be a force removal on its way:
    /// it is looked at again until the checks run out, and reported removed if it goes; if it
    /// stays, the daemon's event log is asked whether the OOM killer did it.
    pub(crate) async fn container_lost(&self, container: &str) -> Option<Termination> {
        let mut killed = None;
        for ms in CONTAINER_SETTLE_MS {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            match self.container_state(container).await {
                Some((
                    lost @ Termination::SandboxLost {
                        reason:
                            LostReason::ContainerStopped {
                                exit_code: Some(137),
                                oom_killed: false,
                            },
                    },
                    finished,
                )) => killed = Some((lost, finished)),
                Some((lost, _)) => return Some(lost),
                None if killed.is_some() => break,
                None => {}
            }
        }
        match killed {
            Some((
                Termination::SandboxLost {
                    reason: LostReason::ContainerStopped { exit_code, .. },
                },
                Some(finished),
            )) if oom_logged(&self.docker, container, finished).await => {
                Some(Termination::SandboxLost {
                    reason: LostReason::ContainerStopped {
                        exit_code,
                        oom_killed: true,
                    },
                })
            }
            other => other.map(|(lost, _)| lost),
        }
    }
}

/// Reads the kill exec's output: one report frame, within a small bound whatever else arrives
/// (the service is shared by every tenant; no sandbox may make it buffer without limit).
async fn read_kill_report(output: ExecOutput) -> Result<KillReport, ReportError> {
    read_report(output, "the kill exec", KillReport::check).await
}

/// Reads one [`frame::REPORT`] from a runner exec's output (`what` names it in errors),
/// within a bound of one frame whatever else arrives, and checks it with `check`.
pub(crate) async fn read_report<T: serde::de::DeserializeOwned>(
    mut output: ExecOutput,
    what: &'static str,
    check: impl Fn(&T) -> Result<(), &'static str>,
) -> Result<T, ReportError> {
    let mut frames = frame::Decoder::new(frame::to_host_limit);
    let mut complaints = diagnostic();
    let mut read = 0usize;
    let limit = frame::HEADER + frame::MAX_MESSAGE;
    while let Some(item) = output.next().await {
        let item = item.map_err(|e| ReportError::Read {
            what,
            error: e.to_string(),
        })?;
        match item {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                read += message.len();
                frames.push(&message);
                match frames.next_frame() {
                    Ok(Some((frame::REPORT, json))) => {
                        let malformed = |reason: String| ReportError::Malformed { what, reason };
                        let report: T =
                            serde_json::from_slice(&json).map_err(|e| malformed(e.to_string()))?;
                        check(&report).map_err(|e| malformed(e.to_owned()))?;
                        return Ok(report);
                    }
                    Ok(Some((kind, _))) => return Err(ReportError::UnexpectedFrame { what, kind }),
                    Ok(None) if read <= limit => {}
                    Ok(None) => return Err(ReportError::TooLong { what, limit }),
                    Err(e) => {
                        return Err(ReportError::NotAFrame {
                            what,
                            reason: e.to_string(),
                        });
                    }
                }
            }
            LogOutput::StdErr { message } => complaints.push(&message),
            LogOutput::StdIn { .. } => {}
        }
    }
    Err(ReportError::NoReport {
        what,
        said: complaints.to_string_lossy().trim().to_owned(),
    })
}

/// Sends the request, then the command's stdin as frames, then waits for a kill order, and
/// keeps the channel open until dropped: the supervisor takes its end-of-file as "the client
/// went away".
async fn feed(
    mut input: ExecInput,
    request: Vec<u8>,
    stdin: Option<Bytes>,
    mut orders: tokio::sync::mpsc::UnboundedReceiver<KillOrder>,
) -> std::io::Result<()> {
    let kill_frame = |order: KillOrder| {
        frame::encode(
            frame::KILL,
            &serde_json::to_vec(&order).expect("KillOrder serializes"),
        )
    };
    input
        .write_all(&frame::encode(frame::REQUEST, &request))
        .await?;
    for chunk in stdin
        .as_deref()
        .unwrap_or_default()
        .chunks(frame::MAX_PAYLOAD)
    {
        // Between frames only: a frame cut in half would break the channel.
        if let Ok(order) = orders.try_recv() {
            input.write_all(&kill_frame(order)).await?;
            input.flush().await?;
            return std::future::pending().await;
        }
        input.write_all(&frame::encode(frame::DATA, chunk)).await?;
    }
    input.write_all(&frame::encode(frame::EOF, &[])).await?;
    input.flush().await?;
    if let Some(order) = orders.recv().await {
        input.write_all(&kill_frame(order)).await?;
        input.flush().await?;
    }
    std::future::pending().await
}

/// Runs `work` unless the call's cancellation or deadline comes first (then says which).
pub(crate) async fn within<T>(
    req: &ExecRequest,
    deadline: tokio::time::Instant,
    work: impl Future<Output = T>,
) -> Result<T, Stop> {
    tokio::select! {
        biased;
        _ = req.cancel.cancelled() => Err(Stop::Cancelled),
        _ = tokio::time::sleep_until(deadline) => Err(Stop::TimedOut),
        done = work => Ok(done),
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn lost_daemon(e: &DockerError) -> Termination {
    Termination::SandboxLost {
        reason: LostReason::DaemonUnreachable {
            error: e.to_string(),
        },
    }
}

pub(crate) fn from_report(report: &RunReport) -> Termination {
    match report.status {
        Some(sandbox_protocol::ExitStatus::Exited { code }) => Termination::Exited {
            code: i32::from(code),
        },
        Some(sandbox_protocol::ExitStatus::Signaled { signal }) => Termination::Signaled {
            signal: i32::from(signal),
        },
        // Nothing started: the code a shell would give (127 not found, 126 cannot execute, 2
        // bad request or missing working directory); the report says why.
        None => Termination::Exited {
            code: report
                .spawn_failure
                .map_or(sandbox_protocol::exit::NOT_FOUND, SpawnFailure::exit_code),
        },
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    fn endless(kind: fn(Bytes) -> LogOutput, chunk: Vec<u8>) -> ExecOutput {
        Box::pin(stream::repeat_with(move || {
            Ok(kind(Bytes::from(chunk.clone())))
        }))
    }

    fn stdout(message: Bytes) -> LogOutput {
        LogOutput::StdOut { message }
    }

    #[tokio::test]
    async fn a_kill_exec_that_floods_is_read_within_a_bound() {
        // Output that never ends and is no report: refused at once, whatever its shape.
        let garbage = read_kill_report(endless(stdout, vec![b'F'; 64 * 1024])).await;
        assert!(
            matches!(garbage, Err(ReportError::NotAFrame { .. })),
            "{garbage:?}"
        );
        let frames = frame::encode(frame::STDOUT, &[b'F'; 1024]);
        let framed = read_kill_report(endless(stdout, frames)).await;
        assert!(
            matches!(framed, Err(ReportError::UnexpectedFrame { kind: 16, .. })),
            "{framed:?}"
        );
        // A report frame that never completes: cut off past one message's size.
        let mut slow = frame::header(frame::REPORT, frame::MAX_MESSAGE).to_vec();
        slow.push(b' ');
        let mut sent = false;
        let trickle: ExecOutput = Box::pin(stream::repeat_with(move || {
            let message = if std::mem::replace(&mut sent, true) {
                Bytes::from_static(b" ")
            } else {
                Bytes::from(slow.clone())
            };
            Ok(LogOutput::StdOut { message })
        }));
        let cut = read_kill_report(trickle).await;
        assert!(
            matches!(
                cut,
                Err(ReportError::Malformed { .. } | ReportError::TooLong { .. })
            ),
            "{cut:?}"
        );
        // Stderr is kept up to a few KiB, however much comes.
        let lots = (0..10_000).map(|_| {
            Ok(LogOutput::StdErr {
                message: Bytes::from(vec![b'e'; 64 * 1024]),
            })
        });
        let err = read_kill_report(Box::pin(stream::iter(lots)))
            .await
            .expect_err("no report");
        let ReportError::NoReport { said, .. } = &err else {
            panic!("{err:?}");
        };
        assert!(
            said.len() < 2 * crate::capture::DIAGNOSTIC_BYTES,
            "{}",
            said.len()
        );
    }

    #[tokio::test]
    async fn the_kill_report_is_read_from_its_frame() {
        let report = KillReport {
            found: 2,
            killed: 2,
            rounds: 1,
            ..KillReport::default()
        };
        let bytes = frame::encode(frame::REPORT, &serde_json::to_vec(&report).expect("json"));
        let (a, b) = bytes.split_at(3);
        let parts = [a.to_vec(), b.to_vec()].map(|m| {
            Ok(LogOutput::StdOut {
                message: Bytes::from(m),
            })
        });
        let got = read_kill_report(Box::pin(stream::iter(parts))).await;
        assert_eq!(got, Ok(report));
    }
}

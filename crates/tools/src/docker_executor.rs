//! [`DockerExecutor`]: the seven sandbox tools run in the user's sandbox; every other tool
//! goes to the host executor it wraps.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use async_trait::async_trait;
use sandbox_exec::{
    ExecClient, ExecOptions, ExecRequest, Outcome, OutputCaps, Termination, Tool, ToolInput,
};
use sandbox_pool::{Fleet, Lease, Recreated};
use serde_json::Value;
use tracing::{debug, warn};

use crate::ToolError;
use crate::args::{self, ArgError};
use crate::config::{ToolsConfig, Transport};
use crate::executor::{CallContext, Executor, ToolMeta, ToolResult};
use crate::format::{self, EXIT_BAD_ARGS, EXIT_CANCELLED, EXIT_INTERNAL, EXIT_TIMEOUT};
use crate::quota::{QuotaDecision, QuotaGate, UsageStore};
use crate::schema::{is_sandbox_tool, sandbox_tool_schemas};

/// Caps of the file tools' output: they cap themselves (read at 256 KiB, grep and glob by
/// entries), so this only guards against a runner gone wrong.
const FILE_TOOL_CAPS: OutputCaps = OutputCaps {
    head: 1024 * 1024,
    tail: 64 * 1024,
};
/// `shell` commands longer than this travel on stdin into a temporary script instead of argv
/// (Linux refuses a single argument over 128 KiB).
const MAX_ARGV_COMMAND: usize = 64 * 1024;
/// Environment of `run_python` (the seed's): skills import as `skills.x`, user scripts from
/// the workspace, and UTF-8 whatever the locale.
const PYTHON_ENV: [(&str, &str); 2] = [
    ("PYTHONIOENCODING", "utf-8"),
    ("PYTHONPATH", "/sandbox:/workspace"),
];

/// An engine's name and the exec client of its sandboxes.
type EngineExec = (String, Arc<ExecClient>);

/// What every user's executor shares.
#[derive(Clone)]
struct Shared {
    host: Arc<dyn Executor>,
    pool: Fleet,
    exec: ExecOptions,
    /// One client per engine, made on its first call (an engine's client never changes).
    execs: Arc<RwLock<Vec<EngineExec>>>,
    config: ToolsConfig,
    quota: QuotaGate,
}

/// Runs the sandbox tools of one user (and working directory) in that user's sandbox, and
/// hands every other tool to the host executor. Cheap to clone and to make per conversation.
#[derive(Clone)]
pub struct DockerExecutor {
    shared: Arc<Shared>,
    user: String,
    working_dir: PathBuf,
}

impl std::fmt::Debug for DockerExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerExecutor")
            .field("user", &self.user)
            .field("working_dir", &self.working_dir)
            .finish_non_exhaustive()
    }
}

/// What the sandbox answered (and why it was made anew, if it was), before formatting; `Err`
/// is why nothing could run.
type Ran = Result<(Outcome, Option<Recreated>), ToolError>;

impl DockerExecutor {
    /// An executor for `user` working in `working_dir` (a host folder, normally inside the
    /// user's root), with default settings. `pool` is a [`Fleet`], or one
    /// [`SandboxPool`](sandbox_pool::SandboxPool).
    pub fn new(
        host: Arc<dyn Executor>,
        pool: impl Into<Fleet>,
        user: impl Into<String>,
        working_dir: impl Into<PathBuf>,
    ) -> Self {
        Self::with_config(host, pool, ToolsConfig::default(), user, working_dir)
    }

    /// As [`DockerExecutor::new`], with `config`.
    pub fn with_config(
        host: Arc<dyn Executor>,
        pool: impl Into<Fleet>,
        config: ToolsConfig,
        user: impl Into<String>,
        working_dir: impl Into<PathBuf>,
    ) -> Self {
        let pool: Fleet = pool.into();
        let mut config = config;
        // One setting: without a quota of its own, the gate checks the pool's disk quota.
        if config.quotas.disk_bytes_per_user.is_none() {
            config.quotas.disk_bytes_per_user = pool.config().disk_quota;
        }
        let quota = QuotaGate::new(config.quotas.clone());
        Self {
            shared: Arc::new(Shared {
                host,
                pool,
                exec: ExecOptions::default(),
                execs: Arc::default(),
                config,
                quota,
            }),
            user: user.into(),
            working_dir: working_dir.into(),
        }
    }

    /// The same tools for another user or working directory, sharing everything else.
    pub fn for_user(&self, user: impl Into<String>, working_dir: impl Into<PathBuf>) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            user: user.into(),
            working_dir: working_dir.into(),
        }
    }

    /// Runs commands with `options` (for example other kill or drain settings).
    pub fn with_exec_options(self, options: ExecOptions) -> Self {
        self.rebuild(|s| {
            s.exec = options;
            s.execs = Arc::default();
        })
    }

    /// Reads disk usage from `store` (the agent service's own) instead of measuring the
    /// user root.
    pub fn with_usage_store(self, store: Arc<dyn UsageStore>) -> Self {
        self.rebuild(|s| s.quota = QuotaGate::with_store(s.config.quotas.clone(), store))
    }

    fn rebuild(self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = (*self.shared).clone();
        change(&mut shared);
        Self {
            shared: Arc::new(shared),
            ..self
        }
    }

    /// Makes the user's sandbox ready ahead of its first call: made or adopted and, on the
    /// channel transport, with its channel open (waited for, at most the open's own timeout).
    /// Returns whether calls will find a channel open; without one they still run, each
    /// through an exec, while the pool keeps trying to open one.
    pub async fn warm_up(&self) -> Result<bool, sandbox_pool::PoolError> {
        let lease = self.shared.pool.acquire(&self.user).await?;
        if !self.wants_channel(&lease) {
            return Ok(false);
        }
        Ok(lease.open_channel(&self.exec_for(&lease)).await.is_some())
    }

    /// The exec client of the engine `lease` runs on.
    fn exec_for(&self, lease: &Lease) -> Arc<ExecClient> {
        let execs = &self.shared.execs;
        let find = |list: &[EngineExec]| {
            list.iter()
                .find(|(engine, _)| engine == lease.engine())
                .map(|(_, exec)| Arc::clone(exec))
        };
        if let Some(exec) = find(&execs.read().unwrap_or_else(|e| e.into_inner())) {
            return exec;
        }
        let mut list = execs.write().unwrap_or_else(|e| e.into_inner());
        if let Some(exec) = find(&list) {
            return exec;
        }
        let exec = Arc::new(ExecClient::with_options(
            lease.docker().clone(),
            self.shared.exec.clone(),
        ));
        list.push((lease.engine().to_owned(), Arc::clone(&exec)));
        exec
    }

    /// The user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The pool: its engines and their sandboxes.
    pub fn pool(&self) -> &Fleet {
        &self.shared.pool
    }

    fn exec_user<'a>(&'a self, lease: &'a Lease) -> &'a str {
        self.shared
            .config
            .exec_user
            .as_deref()
            .unwrap_or(&lease.exec_user)
    }

    /// The call's working directory in the container: `/workspace/<relative path>`, or
    /// `/workspace` when it lies outside the user root (compared after resolving links, as
    /// the seed did).
    fn container_dir(&self, lease: &Lease) -> String {
        let resolve = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        let root = resolve(&lease.user_root);
        let dir = resolve(&self.working_dir);
        match dir.strip_prefix(&root) {
            Ok(rel) => lease.container_dir(&lease.user_root.join(rel)),
            Err(_) => lease.container_dir(Path::new("/")),
        }
    }

    /// Runs `req` in the user's sandbox, all of it (the wait for the sandbox included) within
    /// `deadline` and the call's cancellation. A sandbox found gone before the command started
    /// is replaced and the call retried once (nothing ran); one lost mid-call is reported.
    async fn run(&self, req: ExecRequest, ctx: &CallContext, deadline: Instant) -> Ran {
        let started = Instant::now();
        for attempt in 0..2 {
            let acquired = within(ctx, deadline, self.shared.pool.acquire(&self.user)).await;
            let mut lease = match acquired {
                Ok(Ok(lease)) => lease,
                Ok(Err(source)) => return Err(self.pool_failed(source)),
                Err(stopped) => {
                    debug!(user = %self.user, ?stopped, "stopped while waiting for the sandbox");
                    return Ok((Outcome::not_started(stopped, started.elapsed()), None));
                }
            };
            let req = req
                .clone()
                .with_user(self.exec_user(&lease))
                .with_working_dir(self.container_dir(&lease))
                .with_deadline(deadline)
                .with_cancel(ctx.cancel.child_token());
            let req = match &ctx.sink {
                Some(sink) => req.with_sink(Arc::clone(sink)),
                None => req,
            };
            match self.run_on(&lease, req).await {
                Ok(outcome) => {
                    // Lost, or out of time before the command could start (the daemon may not
                    // be answering): the next call asks the daemon rather than trust memory.
                    let unsure = outcome.kill.is_none()
                        && matches!(
                            outcome.termination,
                            Termination::TimedOut | Termination::Cancelled
                        );
                    if unsure || matches!(outcome.termination, Termination::SandboxLost { .. }) {
                        lease.mark_lost();
                        // The engine may be down or hung: ask it now, not at the next ping.
                        self.shared.pool.suspect();
                    }
                    return Ok((outcome, lease.recreated.clone()));
                }
                Err(e) => {
                    // Whatever stopped the exec (sandbox gone, daemon down), the next call
                    // must ask the daemon rather than trust memory.
                    lease.mark_lost();
                    // Nothing ran: on an engine that does not answer, the retry goes to the
                    // user's next engine.
                    let unreachable = e.is_daemon_unreachable();
                    if unreachable {
                        self.shared.pool.report_unreachable(lease.engine(), &e);
                    }
                    let retry = attempt == 0
                        && (e.is_sandbox_gone()
                            || e.is_sandbox_unusable()
                            || unreachable && self.shared.pool.spans_engines());
                    if !retry {
                        return Err(ToolError::Exec {
                            user: self.user.clone(),
                            source: e,
                        });
                    }
                    warn!(user = %self.user, error = %e, "the sandbox cannot run the call; replacing it");
                    if e.is_sandbox_unusable() {
                        let id = lease.container_id.clone();
                        drop(lease);
                        if let Err(source) = self.shared.pool.recycle(&self.user, &id).await {
                            return Err(self.pool_failed(source));
                        }
                    }
                }
            }
        }
        unreachable!("the second attempt always returns")
    }

    fn pool_failed(&self, source: sandbox_pool::PoolError) -> ToolError {
        ToolError::Sandbox {
            user: self.user.clone(),
            source,
        }
    }

    /// Whether this user's calls go over the channel: the configuration says so and they run
    /// as the sandbox user (a channel runs everything as the user it was opened for).
    fn wants_channel(&self, lease: &Lease) -> bool {
        self.shared.config.transport == Transport::Channel
            && self.exec_user(lease) == lease.exec_user
    }

    /// Runs `req` over the sandbox's channel when the configuration says so and the call runs
    /// as the sandbox user; through an exec of its own otherwise, or when the channel is down
    /// or did not take the call (nothing of it ran).
    async fn run_on(
        &self,
        lease: &Lease,
        req: ExecRequest,
    ) -> Result<Outcome, sandbox_exec::ExecError> {
        let exec = &self.exec_for(lease);
        // Without one open now, this call goes through its exec while the pool opens one.
        let channel = if self.wants_channel(lease) {
            lease.channel(exec)
        } else {
            None
        };
        if let Some(channel) = channel {
            match channel.run(req.clone()).await {
                Err(e) if e.is_channel_down() => {
                    debug!(user = %self.user, error = %e, "the channel did not take the call; running it through an exec");
                    // Starts the reopen now rather than at the next call.
                    let _ = lease.channel(exec);
                }
                done => return done,
            }
        }
        exec.run(&lease.container_id, req).await
    }

    async fn shell(&self, args: &Value, ctx: &CallContext) -> ToolResult {
        let parsed = match args::parse_shell(args, &self.shared.config.timeouts()) {
            Ok(p) => p,
            Err(e) => return bad_args(&e),
        };
        let req = if parsed.command.len() > MAX_ARGV_COMMAND {
            ExecRequest::script(["bash"], ".sh", parsed.command)
        } else {
            ExecRequest::new(["bash", "-c", parsed.command.as_str()])
        };
        let req = req
            .with_timeout(parsed.timeout)
            .with_caps(self.command_caps());
        self.command(Tool::Shell, req, ctx).await
    }

    async fn python(&self, args: &Value, ctx: &CallContext) -> ToolResult {
        let parsed = match args::parse_python(args, &self.shared.config.timeouts()) {
            Ok(p) => p,
            Err(e) => return bad_args(&e),
        };
        let mut req = ExecRequest::script(["python3"], ".py", parsed.code)
            .with_timeout(parsed.timeout)
            .with_caps(self.command_caps());
        for (k, v) in PYTHON_ENV {
            req = req.with_env(k, v);
        }
        self.command(Tool::RunPython, req, ctx).await
    }

    fn command_caps(&self) -> OutputCaps {
        let c = &self.shared.config;
        OutputCaps::new(
            c.output_head.as_u64() as usize,
            c.output_tail.as_u64() as usize,
        )
    }

    /// shell and run_python: `[stdout]`/`[stderr]`/`[exit N]` with the command's real code.
    async fn command(&self, tool: Tool, req: ExecRequest, ctx: &CallContext) -> ToolResult {
        let timeout = req.timeout();
        let deadline = Instant::now() + timeout;
        match self.run(req, ctx, deadline).await {
            Err(e) => failed(tool, e),
            Ok((outcome, recreated)) => {
                let code = outcome.exit_code();
                finish(tool, &outcome, recreated, whole_secs(timeout), |o| {
                    (format::command_result(&o.stdout, &o.stderr, code), code)
                })
            }
        }
    }

    async fn file_tool(&self, tool: Tool, args: &Value, ctx: &CallContext) -> ToolResult {
        let call = match args::parse_file_tool(tool, args, &self.shared.config.timeouts()) {
            Ok(c) => c,
            Err(e) => return bad_args(&e),
        };
        // The reported seconds are the model's own timeout; the deadline may add grep's slack.
        let secs = whole_secs(match tool {
            Tool::Grep => call.deadline.saturating_sub(args::GREP_SLACK),
            _ => call.deadline,
        });
        let started = Instant::now();
        let deadline = started + call.deadline;
        let writes = tool.writes();
        let mut max_growth_bytes = None;
        if writes {
            let root = self.shared.pool.user_root(&self.user);
            let check = self
                .shared
                .quota
                .check(&self.user, &root, incoming_bytes(tool, args));
            // Dropping the check on a stop also stops the walk of the user root.
            let decision = match within(ctx, deadline, check).await {
                Ok(decision) => decision,
                Err(stopped) => {
                    let outcome = Outcome::not_started(stopped, started.elapsed());
                    return finish(tool, &outcome, None, secs, file_tool_answer);
                }
            };
            match decision {
                QuotaDecision::Unlimited => {}
                QuotaDecision::Allowed { remaining } => max_growth_bytes = Some(remaining),
                // Refused before anything reaches the container: nothing changes.
                QuotaDecision::Refused { message } => {
                    crate::metrics::quota_refused(tool);
                    return ToolResult::new(message, EXIT_BAD_ARGS);
                }
            }
        }
        let input = ToolInput {
            args: call.args.into_owned(),
            max_growth_bytes,
        };
        let req = ExecRequest::tool(tool, &input)
            .with_timeout(call.deadline)
            .with_caps(FILE_TOOL_CAPS);
        let ran = self.run(req, ctx, deadline).await;
        if writes {
            self.shared.quota.record_write(&self.user);
        }
        let result = match ran {
            Err(e) => failed(tool, e),
            Ok((outcome, recreated)) => finish(tool, &outcome, recreated, secs, file_tool_answer),
        };
        // The runner's own refusal of a growth past the headroom (its words, in atomic.rs).
        if writes
            && result.exit_code == EXIT_BAD_ARGS
            && result.content.contains("refused: disk quota exceeded")
        {
            crate::metrics::quota_refused(tool);
        }
        result
    }
}

/// Bytes a change surely adds, for the gate's early refusal: an `edit` grows the file by at
/// least one replacement's difference; a `write` may overwrite a file of any size, so nothing
/// is sure. The runner then checks the exact growth against the remaining headroom.
fn incoming_bytes(tool: Tool, args: &Value) -> u64 {
    let len = |key: &str| args.get(key).and_then(Value::as_str).map_or(0, str::len) as u64;
    match tool {
        Tool::Edit => len("new_string").saturating_sub(len("old_string")),
        _ => 0,
    }
}

/// Turns an outcome into the model's text: timeouts, cancellations and lost sandboxes the
/// same way for every tool, the rest by `done`.
fn finish(
    tool: Tool,
    outcome: &Outcome,
    recreated: Option<Recreated>,
    timeout_secs: u64,
    done: impl FnOnce(&Outcome) -> (String, i32),
) -> ToolResult {
    let (content, exit_code) = match &outcome.termination {
        Termination::TimedOut => (
            format::with_partial_output(
                &format::timed_out(timeout_secs),
                &outcome.stdout,
                &outcome.stderr,
            ),
            EXIT_TIMEOUT,
        ),
        Termination::Cancelled => (
            format::with_partial_output(format::cancelled(), &outcome.stdout, &outcome.stderr),
            EXIT_CANCELLED,
        ),
        Termination::SandboxLost { reason } => {
            (format::sandbox_lost(tool, lost_text(reason)), EXIT_INTERNAL)
        }
        Termination::Exited { .. } | Termination::Signaled { .. } => done(outcome),
    };
    debug!(
        tool = tool.name(),
        exit_code,
        duration_ms = outcome.duration.as_millis() as u64,
        "tool call finished"
    );
    ToolResult {
        content,
        exit_code,
        meta: ToolMeta {
            truncated: outcome.stdout.is_truncated() || outcome.stderr.is_truncated(),
            termination: Some(outcome.termination.clone()),
            error: None,
            recreated,
            kill: outcome.kill.clone(),
            duration: outcome.duration,
        },
    }
}

/// A call that failed before its command could run: the seed's `[Error executing ...]` for
/// the model, the typed error for the service.
fn failed(tool: Tool, error: ToolError) -> ToolResult {
    let mut result = ToolResult::new(format::internal_error(tool, error.detail()), EXIT_INTERNAL);
    result.meta.error = Some(Arc::new(error));
    result
}

fn lost_text(reason: &sandbox_exec::LostReason) -> String {
    match reason {
        sandbox_exec::LostReason::ContainerRemoved => "the container was removed".to_owned(),
        sandbox_exec::LostReason::ContainerStopped {
            oom_killed: true, ..
        } => "the container ran out of memory and was killed".to_owned(),
        sandbox_exec::LostReason::ContainerStopped { exit_code, .. } => match exit_code {
            Some(code) => format!("the container stopped (exit code {code})"),
            None => "the container stopped".to_owned(),
        },
        sandbox_exec::LostReason::DaemonUnreachable { error } => {
            format!("the Docker daemon stopped answering ({error})")
        }
        sandbox_exec::LostReason::ChannelLost => {
            "the sandbox's channel closed while the call ran".to_owned()
        }
        sandbox_exec::LostReason::RunnerBroke { detail } => {
            format!("the sandbox's runner broke the protocol ({detail})")
        }
    }
}

/// Runs `work` unless the call is cancelled or `deadline` passes first; then says which.
async fn within<T>(
    ctx: &CallContext,
    deadline: Instant,
    work: impl Future<Output = T>,
) -> Result<T, Termination> {
    tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => Err(Termination::Cancelled),
        _ = tokio::time::sleep_until(deadline.into()) => Err(Termination::TimedOut),
        done = work => Ok(done),
    }
}

/// A file tool's answer: its stdout on success, its stderr on failure, its own code.
fn file_tool_answer(o: &Outcome) -> (String, i32) {
    let code = o.exit_code();
    (format::file_tool_result(&o.stdout, &o.stderr, code), code)
}

/// Seconds for the timeout message, rounded up so that 0.25 s never reads "0s".
fn whole_secs(d: std::time::Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

fn bad_args(e: &ArgError) -> ToolResult {
    ToolResult::new(e.to_string(), e.exit_code())
}

#[async_trait]
impl Executor for DockerExecutor {
    fn has_tool(&self, name: &str) -> bool {
        self.shared.host.has_tool(name)
    }

    /// The host's schemas, with the sandbox tools it offers described by ours, stating this
    /// executor's configured defaults.
    fn schemas(&self) -> Vec<Value> {
        let ours = sandbox_tool_schemas(&self.shared.config);
        let name_of = |s: &Value| s.get("name").and_then(Value::as_str).map(str::to_owned);
        let mut all: Vec<Value> = self
            .shared
            .host
            .schemas()
            .into_iter()
            .filter(|s| !name_of(s).is_some_and(|n| is_sandbox_tool(&n)))
            .collect();
        all.extend(
            ours.into_iter()
                .filter(|s| name_of(s).is_some_and(|n| self.shared.host.has_tool(&n))),
        );
        all
    }

    #[tracing::instrument(skip_all, fields(user = %self.user, tool = name, task = %ctx.task_id))]
    async fn call_tool(&self, name: &str, args: Value, ctx: &CallContext) -> ToolResult {
        let Some(tool) = Tool::from_name(name) else {
            return self.shared.host.call_tool(name, args, ctx).await;
        };
        // A capability the service turned off: the model never saw its schema either.
        if !self.shared.host.has_tool(name) {
            return ToolResult::new(format::unknown_tool(name), EXIT_BAD_ARGS);
        }
        let started = Instant::now();
        let mut result = match tool {
            Tool::Shell => self.shell(&args, ctx).await,
            Tool::RunPython => self.python(&args, ctx).await,
            _ => self.file_tool(tool, &args, ctx).await,
        };
        result.meta.duration = started.elapsed();
        crate::metrics::record(tool, &result);
        result
    }
}

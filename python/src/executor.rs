//! `DockerExecutor`: the seed's class, over the library's. Host tools go to the service's own
//! host executor object exactly as the seed sends them; the seven sandbox tools run in the
//! user's sandbox with the GIL released for the whole call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sandbox_exec::{OutputChunk, StreamKind};
use sandbox_tools::{CallContext, DockerExecutor, Executor, QuotaError, ToolResult, UsageStore};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pool::{PySandboxPool, user_of};
use crate::{convert, result, runtime};

/// How often a call asks the context's `cancel_check` (taking the GIL for it briefly).
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Runs the seven sandbox tools (`shell`, `run_python`, `read`, `write`, `edit`, `glob`,
/// `grep`) of one user in that user's sandbox; every other tool goes to `host`.
#[pyclass(name = "DockerExecutor", module = "zcbot_sandbox", frozen)]
pub(crate) struct PyDockerExecutor {
    /// The service's own executor: host tools, and which tools are offered at all.
    #[pyo3(get)]
    host: Py<PyAny>,
    /// The pool the sandbox comes from.
    #[pyo3(get)]
    pool: Py<PySandboxPool>,
    /// The user, as given.
    #[pyo3(get)]
    user_id: Py<PyAny>,
    /// The user's root on the host (mounted as `/workspace`).
    #[pyo3(get)]
    user_root: PathBuf,
    /// Where calls run (`/workspace/<its path under user_root>`).
    #[pyo3(get)]
    working_dir: PathBuf,
    tools: DockerExecutor,
    result_class: Option<Py<PyAny>>,
}

/// The service's host executor, seen by the library: which tools it offers and their schemas.
/// Its tools are called from Python directly ([`PyDockerExecutor::call_tool`]), with the
/// service's own context object.
struct PyHost(Py<PyAny>);

#[async_trait]
impl Executor for PyHost {
    fn has_tool(&self, name: &str) -> bool {
        Python::attach(|py| {
            let host = self.0.bind(py);
            match host
                .call_method1("has_tool", (name,))
                .and_then(|r| r.is_truthy())
            {
                Ok(has) => has,
                Err(e) => {
                    e.write_unraisable(py, Some(host));
                    false
                }
            }
        })
    }

    fn schemas(&self) -> Vec<Value> {
        Python::attach(|py| {
            let host = self.0.bind(py);
            let schemas = host
                .call_method0("schemas")
                .and_then(|s| convert::to_json(&s));
            match schemas {
                Ok(Value::Array(schemas)) => schemas,
                Ok(_) => Vec::new(),
                Err(e) => {
                    e.write_unraisable(py, Some(host));
                    Vec::new()
                }
            }
        })
    }

    async fn call_tool(&self, name: &str, _args: Value, _ctx: &CallContext) -> ToolResult {
        // Never reached: PyDockerExecutor hands host tools to the Python object itself.
        ToolResult::new(format!("[Error] unknown tool: {name}"), 2)
    }
}

/// The service's usage source: `usage(user_id) -> bytes`, called off the event loop.
struct PyUsage(Arc<Py<PyAny>>);

impl std::fmt::Debug for PyUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PyUsage")
    }
}

#[async_trait]
impl UsageStore for PyUsage {
    async fn usage(&self, user: &str, _root: &Path) -> Result<u64, QuotaError> {
        let (usage, user) = (Arc::clone(&self.0), user.to_owned());
        let asked = tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                usage
                    .bind(py)
                    .call1((user,))
                    .and_then(|n| n.extract::<u64>())
                    .map_err(|e| e.to_string())
            })
        })
        .await
        .map_err(QuotaError::Task)?;
        asked.map_err(|e| QuotaError::Store(e.into()))
    }
}

/// One sandbox call's inputs, taken from Python before the GIL is let go.
struct Call {
    tools: DockerExecutor,
    name: String,
    args: Value,
    task_id: String,
    cancel_check: Option<Py<PyAny>>,
    sink: Option<Py<PyAny>>,
}

/// Where live output goes: the caller's sink, called on the thread that drives the call (the
/// caller's own for `call_tool`), or scheduled on the caller's event loop for `acall_tool`.
enum Deliver {
    Direct(Py<PyAny>),
    OnLoop {
        event_loop: Py<PyAny>,
        sink: Py<PyAny>,
    },
}

impl Deliver {
    fn send(&self, chunk: OutputChunk) {
        let stream = match chunk.stream {
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
        };
        Python::attach(|py| {
            let data = PyBytes::new(py, &chunk.bytes);
            let (sent, to) = match self {
                Self::Direct(sink) => (sink.bind(py).call1((stream, data)), sink),
                Self::OnLoop { event_loop, sink } => (
                    event_loop
                        .bind(py)
                        .call_method1("call_soon_threadsafe", (sink, stream, data)),
                    sink,
                ),
            };
            if let Err(e) = sent {
                e.write_unraisable(py, Some(to.bind(py)));
            }
        });
    }
}

impl Call {
    /// Runs the call to its result: one `select!` over the call, its live output and the
    /// `cancel_check` timer. `cancel` also stops it (an asyncio task's cancellation).
    async fn drive(self, deliver: Option<Deliver>, cancel: CancellationToken) -> ToolResult {
        let (tx, mut rx) = mpsc::unbounded_channel::<OutputChunk>();
        let mut ctx = CallContext::new(self.task_id).with_cancel(cancel.clone());
        if deliver.is_some() {
            ctx = ctx.with_sink(Arc::new(move |chunk: OutputChunk| {
                let _ = tx.send(chunk);
            }));
        }
        let call = self.tools.call_tool(&self.name, self.args, &ctx);
        tokio::pin!(call);
        let mut poll = tokio::time::interval(CANCEL_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                result = &mut call => break result,
                Some(chunk) = rx.recv(), if deliver.is_some() => {
                    if let Some(deliver) = &deliver {
                        deliver.send(chunk);
                    }
                }
                _ = poll.tick(), if self.cancel_check.is_some() && !cancel.is_cancelled() => {
                    if let Some(check) = &self.cancel_check
                        && asks_to_cancel(check)
                    {
                        cancel.cancel();
                    }
                }
            }
        };
        // What arrived before the result still reaches the sink, in order.
        if let Some(deliver) = &deliver {
            while let Ok(chunk) = rx.try_recv() {
                deliver.send(chunk);
            }
        }
        result
    }
}

/// Whether `cancel_check()` says stop; one that raises is reported and does not stop the call.
fn asks_to_cancel(check: &Py<PyAny>) -> bool {
    Python::attach(|py| {
        let check = check.bind(py);
        match check.call0().and_then(|r| r.is_truthy()) {
            Ok(stop) => stop,
            Err(e) => {
                e.write_unraisable(py, Some(check));
                false
            }
        }
    })
}

/// The `task_id` and `cancel_check` of the seed's `ExecCtx` (or of anything shaped like it;
/// `None` has neither).
fn context_of(ctx: &Bound<'_, PyAny>) -> PyResult<(String, Option<Py<PyAny>>)> {
    if ctx.is_none() {
        return Ok((String::new(), None));
    }
    let task_id = match ctx.getattr_opt("task_id")? {
        Some(id) if !id.is_none() => id.str()?.to_string(),
        _ => String::new(),
    };
    let cancel_check = ctx
        .getattr_opt("cancel_check")?
        .filter(|c| !c.is_none())
        .map(Bound::unbind);
    Ok((task_id, cancel_check))
}

impl PyDockerExecutor {
    /// The call's inputs, or the result that refuses it before anything runs.
    fn prepare(
        &self,
        name: &str,
        args: &Bound<'_, PyAny>,
        ctx: &Bound<'_, PyAny>,
        sink: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Result<Call, ToolResult>> {
        let args = match convert::to_json(args) {
            Ok(args) => args,
            Err(e) => {
                return Ok(Err(ToolResult::new(
                    format!("[Error] bad arguments to {name}: not JSON: {e}"),
                    2,
                )));
            }
        };
        let (task_id, cancel_check) = context_of(ctx)?;
        Ok(Ok(Call {
            tools: self.tools.clone(),
            name: name.to_owned(),
            args,
            task_id,
            cancel_check,
            sink: sink.filter(|s| !s.is_none()).map(|s| s.clone().unbind()),
        }))
    }
}

#[pymethods]
impl PyDockerExecutor {
    /// The seed's constructor. `user_root` must be the pool's root for this user (the pool's
    /// `users_root` / `user_id`); `working_dir` lies under it. `result_class` builds results
    /// as `result_class(content=..., exit_code=...)` instead of `ToolResult`; `usage(user_id)
    /// -> bytes` is the disk-quota gate's source instead of walking the user root.
    #[new]
    #[pyo3(signature = (host, pool, user_id, user_root, working_dir, *, result_class = None, usage = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        host: Bound<'_, PyAny>,
        pool: Bound<'_, PySandboxPool>,
        user_id: Bound<'_, PyAny>,
        user_root: PathBuf,
        working_dir: PathBuf,
        result_class: Option<Bound<'_, PyAny>>,
        usage: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let user = user_of(&user_id)?;
        let sandboxes = pool.get().pool()?;
        sandbox_pool::validate_user(&user).map_err(|e| crate::pool::pool_error(&e))?;
        let expected = sandboxes.user_root(&user);
        let given = std::path::absolute(&user_root)?;
        if given != expected {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "user_root {} is not the pool's root for user {user} ({}): start the pool with \
                 users_root={}",
                given.display(),
                expected.display(),
                given.parent().unwrap_or(&given).display(),
            )));
        }
        let working_dir = std::path::absolute(&working_dir)?;
        let mut tools = DockerExecutor::with_config(
            Arc::new(PyHost(host.clone().unbind())),
            sandboxes,
            pool.get().config().tools.clone(),
            user,
            working_dir.clone(),
        );
        if let Some(usage) = usage.filter(|u| !u.is_none()) {
            tools = tools.with_usage_store(Arc::new(PyUsage(Arc::new(usage.unbind()))));
        }
        Ok(Self {
            host: host.unbind(),
            pool: pool.unbind(),
            user_id: user_id.unbind(),
            user_root: given,
            working_dir,
            tools,
            result_class: result_class.filter(|c| !c.is_none()).map(Bound::unbind),
        })
    }

    /// Whether the tool is offered (the host decides, as in the seed).
    fn has_tool(&self, name: &str) -> bool {
        self.tools.has_tool(name)
    }

    /// The offered tools' schemas: the host's, with the sandbox tools' own (stating this
    /// configuration's timeouts and limits) for the sandbox tools the host offers.
    fn schemas<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &Value::Array(self.tools.schemas()))
    }

    /// Runs tool `name` and returns its result; never raises for a tool's failure (that is a
    /// result with an `[Error] ...` text and its exit code). Host tools go to `host.call_tool`
    /// with `ctx` as given. `ctx.cancel_check()` is asked every 50 ms; `sink(stream, data)`
    /// receives live output (`"stdout"`/`"stderr"`, bytes) on this thread.
    #[pyo3(signature = (name, args, ctx = None, *, sink = None))]
    fn call_tool(
        &self,
        py: Python<'_>,
        name: &str,
        args: &Bound<'_, PyAny>,
        ctx: Option<&Bound<'_, PyAny>>,
        sink: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let none = py.None().into_bound(py);
        let ctx = ctx.unwrap_or(&none);
        if !sandbox_tools::is_sandbox_tool(name) {
            return Ok(self
                .host
                .bind(py)
                .call_method1("call_tool", (name, args, ctx))?
                .unbind());
        }
        let result = match self.prepare(name, args, ctx, sink)? {
            Err(refused) => refused,
            Ok(call) => {
                let deliver = call.sink.as_ref().map(|s| Deliver::Direct(s.clone_ref(py)));
                py.detach(|| runtime().block_on(call.drive(deliver, CancellationToken::new())))
            }
        };
        result::into_python(py, result, self.result_class.as_ref())
    }

    /// As `call_tool`, for asyncio: returns an awaitable. Cancelling the awaiting task cancels
    /// the call and kills what it started in the sandbox. `sink` is called on the event loop.
    /// A host tool is awaited from `host.acall_tool` if the host has one, else run in a thread.
    #[pyo3(signature = (name, args, ctx = None, *, sink = None))]
    fn acall_tool<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        args: &Bound<'py, PyAny>,
        ctx: Option<&Bound<'py, PyAny>>,
        sink: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let none = py.None().into_bound(py);
        let ctx = ctx.unwrap_or(&none);
        let asyncio = py.import("asyncio")?;
        if !sandbox_tools::is_sandbox_tool(name) {
            let host = self.host.bind(py);
            if host.hasattr("acall_tool")? {
                return host.call_method1("acall_tool", (name, args, ctx));
            }
            let call = host.getattr("call_tool")?;
            return asyncio.call_method1("to_thread", (call, name, args, ctx));
        }
        let class = self.result_class.as_ref().map(|c| c.clone_ref(py));
        let call = match self.prepare(name, args, ctx, sink)? {
            Err(refused) => {
                let result = result::into_python(py, refused, class.as_ref())?;
                return pyo3_async_runtimes::tokio::future_into_py(py, async move { Ok(result) });
            }
            Ok(call) => call,
        };
        let deliver = match &call.sink {
            Some(sink) => Some(Deliver::OnLoop {
                event_loop: asyncio.call_method0("get_running_loop")?.unbind(),
                sink: sink.clone_ref(py),
            }),
            None => None,
        };
        // The call runs as a task of its own: when asyncio cancels the awaiting future, the
        // future is dropped, its guard cancels the token, and the task kills what the call
        // started before it ends.
        let cancel = CancellationToken::new();
        let task = runtime().spawn(call.drive(deliver, cancel.clone()));
        let guard = cancel.drop_guard();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let result = task.await;
            drop(guard);
            let result = result.unwrap_or_else(|e| {
                ToolResult::new(format!("[Error] the call's task failed: {e}"), 1)
            });
            Python::attach(|py| result::into_python(py, result, class.as_ref()))
        })
    }

    /// Makes the user's sandbox ready ahead of its first call, with its channel open (the
    /// first call otherwise goes through an exec while the channel opens); whether it is.
    fn warm_up(&self, py: Python<'_>) -> PyResult<bool> {
        let tools = self.tools.clone();
        py.detach(|| runtime().block_on(tools.warm_up()))
            .map_err(|e| crate::pool::pool_error(&e))
    }

    /// For the bench: one call through the library alone, timed inside Rust, in seconds.
    fn _rust_call_seconds(
        &self,
        py: Python<'_>,
        name: &str,
        args: &Bound<'_, PyAny>,
    ) -> PyResult<f64> {
        let (tools, args, name) = (self.tools.clone(), convert::to_json(args)?, name.to_owned());
        Ok(py.detach(|| {
            runtime().block_on(async {
                let started = std::time::Instant::now();
                let _ = tools
                    .call_tool(&name, args, &CallContext::new("bench"))
                    .await;
                started.elapsed().as_secs_f64()
            })
        }))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "DockerExecutor(user_id={}, working_dir={:?})",
            self.user_id.bind(py).repr()?,
            self.working_dir
        ))
    }
}

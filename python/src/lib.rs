//! `zcbot_sandbox._native`: the Python package's extension, a drop-in for the agent service's
//! own `SandboxPool` and `DockerExecutor` classes.
//!
//! Owns: the Python face of the libraries (classes, exceptions, conversions between Python
//! objects and the libraries' JSON), the process's tokio runtime, and the bridges from Python's
//! ways of calling (a thread blocked in `call_tool`, an asyncio task awaiting `acall_tool`, a
//! `cancel_check` callable, a sink callable, a usage callable, the service's host executor) to
//! the libraries' (a future, a cancellation token, an `OutputSink`, a `UsageStore`, an
//! `Executor`).
//!
//! Must not: decide anything the libraries decide (routing, argument checks, result texts,
//! limits, the container lifecycle), or hold the GIL while a call waits on the daemon.

mod convert;
mod executor;
mod pool;
mod result;

use std::sync::OnceLock;

use pyo3::prelude::*;
use sandbox_tools::format::error_chain as chain;

pyo3::create_exception!(
    zcbot_sandbox,
    SandboxError,
    pyo3::exceptions::PyException,
    "A sandbox could not be set up or used: the daemon, the image, the pool."
);
pyo3::create_exception!(
    zcbot_sandbox,
    ConfigError,
    SandboxError,
    "The configuration (its file or a keyword) is not one the libraries accept."
);
pyo3::create_exception!(
    zcbot_sandbox,
    DaemonUnavailable,
    SandboxError,
    "No Docker daemon answers (DOCKER_HOST, or the default socket)."
);
pyo3::create_exception!(
    zcbot_sandbox,
    ImageMissing,
    SandboxError,
    "The sandbox image is not on the daemon, or is too old for this library."
);

/// The process's runtime: every pool and every call of the process runs on it, and asyncio
/// awaits it through pyo3-async-runtimes.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("zcbot-sandbox")
            .build()
            .expect("a tokio runtime for the sandbox")
    })
}

/// The process's metrics recorder (the libraries' counters, gauges and histograms), installed
/// when the module loads so that nothing is missed before the first scrape.
fn metrics() -> &'static Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        OnceLock::new();
    HANDLE.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .ok()
    })
}

/// The pool's and the tools' metrics in Prometheus' text format, for the service's own
/// `/metrics` endpoint (names in the README).
#[pyfunction]
fn metrics_text() -> PyResult<String> {
    metrics()
        .as_ref()
        .map(metrics_exporter_prometheus::PrometheusHandle::render)
        .ok_or_else(|| {
            SandboxError::new_err("another metrics recorder is installed in this process")
        })
}

/// Shares the runtime with pyo3-async-runtimes (once; a second call finds it set).
fn share_runtime() {
    let _ = pyo3_async_runtimes::tokio::init_with_runtime(runtime());
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    share_runtime();
    let _ = metrics();
    let py = m.py();
    m.add("SandboxError", py.get_type::<SandboxError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("DaemonUnavailable", py.get_type::<DaemonUnavailable>())?;
    m.add("ImageMissing", py.get_type::<ImageMissing>())?;
    m.add_class::<pool::PySandboxPool>()?;
    m.add_class::<executor::PyDockerExecutor>()?;
    m.add_class::<result::PyToolResult>()?;
    m.add_function(wrap_pyfunction!(metrics_text, m)?)?;
    m.add(
        "SANDBOX_TOOLS",
        pyo3::types::PyFrozenSet::new(py, sandbox_tools::SANDBOX_TOOLS)?,
    )?;
    Ok(())
}

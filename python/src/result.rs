//! `ToolResult`: what a sandbox tool answered, as the seed's class had it (`content`,
//! `exit_code`) with the library's typed facts beside them.

use pyo3::prelude::*;

/// A tool's answer: the text for the model, its exit code, and facts about the call.
#[pyclass(name = "ToolResult", module = "zcbot_sandbox", frozen, get_all, eq)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PyToolResult {
    /// The text the model reads.
    content: String,
    /// 0 on success; the command's own code; 2 bad arguments, 124 timed out, 130 cancelled,
    /// 1 internal failure.
    exit_code: i32,
    /// The deadline passed and the call was killed.
    timed_out: bool,
    /// The call was cancelled and killed.
    cancelled: bool,
    /// Some output was dropped by the caps.
    truncated: bool,
    /// The sandbox went away during the call.
    sandbox_lost: bool,
    /// Why the sandbox was made anew for this call, if it was.
    recreated: Option<String>,
    /// Seconds from the start of the call to its result.
    duration: f64,
    /// After a kill (timeout or cancel): whether nothing of the call was left running.
    nothing_left: Option<bool>,
}

#[pymethods]
impl PyToolResult {
    #[new]
    #[pyo3(signature = (content, exit_code = 0))]
    fn new(content: String, exit_code: i32) -> Self {
        Self::from(sandbox_tools::ToolResult::new(content, exit_code))
    }

    fn __repr__(&self) -> String {
        format!(
            "ToolResult(content={:?}, exit_code={})",
            self.content, self.exit_code
        )
    }
}

impl From<sandbox_tools::ToolResult> for PyToolResult {
    fn from(r: sandbox_tools::ToolResult) -> Self {
        Self {
            content: r.content,
            exit_code: r.exit_code,
            timed_out: r.meta.timed_out(),
            cancelled: r.meta.cancelled(),
            truncated: r.meta.truncated,
            sandbox_lost: r.meta.sandbox_lost(),
            // The variant as Rust writes it (`OomKilled`, `Exited { exit_code: Some(137) }`),
            // as this attribute has always read.
            recreated: r.meta.recreated.map(|why| format!("{why:?}")),
            duration: r.meta.duration.as_secs_f64(),
            nothing_left: r
                .meta
                .kill
                .as_ref()
                .map(sandbox_exec::KillSummary::nothing_left),
        }
    }
}

/// `result` as the service wants it: ours, or `class(content=..., exit_code=...)`.
pub(crate) fn into_python(
    py: Python<'_>,
    result: sandbox_tools::ToolResult,
    class: Option<&Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    match class {
        None => Ok(Py::new(py, PyToolResult::from(result))?.into_any()),
        Some(class) => {
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("content", result.content)?;
            kwargs.set_item("exit_code", result.exit_code)?;
            Ok(class.bind(py).call((), Some(&kwargs))?.unbind())
        }
    }
}

//! Python objects to the libraries' JSON and back, through Python's own `json` (so what a
//! service passes converts exactly as `json.dumps` would).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyAny, PyDict, PyString};

static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn parse(text: &str) -> PyResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

/// `value` as JSON; paths and other objects `json` cannot write become their `str()` (the
/// configuration's keywords).
pub(crate) fn to_json_lenient(value: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let py = value.py();
    let kwargs = PyDict::new(py);
    kwargs.set_item("default", py.get_type::<PyString>())?;
    let text = DUMPS
        .import(py, "json", "dumps")?
        .call((value,), Some(&kwargs))?;
    parse(&text.extract::<String>()?)
}

/// `value` as JSON, refusing what `json` cannot write (a tool's arguments: a model sends JSON).
pub(crate) fn to_json(value: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let text = DUMPS.import(value.py(), "json", "dumps")?.call1((value,))?;
    parse(&text.extract::<String>()?)
}

/// `value` as a Python object (dicts, lists, str, int, float, bool, None).
pub(crate) fn to_python<'py>(
    py: Python<'py>,
    value: &serde_json::Value,
) -> PyResult<Bound<'py, PyAny>> {
    LOADS
        .import(py, "json", "loads")?
        .call1((value.to_string(),))
}

//! `SandboxPool`: the process's pool of per-user sandboxes, configured as `pool-inspect` is.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use sandbox_pool::{Fleet, PoolError, SandboxPool, ShutdownPolicy};
use sandbox_tools::FileConfig;

use crate::{ConfigError, DaemonUnavailable, ImageMissing, SandboxError, chain, convert, runtime};

/// The pool of per-user sandbox containers. Make one per process (it owns the Docker client,
/// the reaper and the per-user locks) and share it between executors; `close()` it, or use it
/// as a context manager.
#[pyclass(name = "SandboxPool", module = "zcbot_sandbox", frozen)]
pub(crate) struct PySandboxPool {
    pool: Mutex<Option<Fleet>>,
    config: FileConfig,
}

impl PySandboxPool {
    /// The running pool, or the error of a closed one.
    pub(crate) fn pool(&self) -> PyResult<Fleet> {
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| SandboxError::new_err("the sandbox pool is closed"))
    }

    pub(crate) fn config(&self) -> &FileConfig {
        &self.config
    }
}

/// The configuration: the file (or the defaults), then `[pool]` keywords, then `tools`.
fn configure(
    path: Option<PathBuf>,
    tools: Option<&Bound<'_, PyDict>>,
    pool: Option<&Bound<'_, PyDict>>,
) -> PyResult<FileConfig> {
    let config = match &path {
        Some(path) => FileConfig::read(path).map_err(|e| ConfigError::new_err(chain(&e)))?,
        None => FileConfig::default(),
    };
    if tools.is_none() && pool.is_none_or(|p| p.is_empty()) {
        return Ok(config);
    }
    let mut value = serde_json::to_value(&config)
        .map_err(|e| ConfigError::new_err(format!("the configuration: {e}")))?;
    if let Some(pool) = pool {
        merge(&mut value["pool"], convert::to_json_lenient(pool.as_any())?);
    }
    if let Some(tools) = tools {
        merge(
            &mut value["tools"],
            convert::to_json_lenient(tools.as_any())?,
        );
    }
    serde_json::from_value(value)
        .map_err(|e| ConfigError::new_err(format!("the configuration's keywords: {e}")))
}

/// `over` laid over `base`, table by table (a keyword replaces one key, not its section).
fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                merge(base.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (base, over) => *base = over,
    }
}

/// A pool error as the Python exception a service would catch.
pub(crate) fn pool_error(e: &PoolError) -> PyErr {
    let text = chain(e);
    match e {
        e if e.is_daemon_unreachable() => DaemonUnavailable::new_err(text),
        PoolError::ImageMissing { .. } | PoolError::ImageOutdated { .. } => {
            ImageMissing::new_err(text)
        }
        PoolError::InvalidUser { .. } => pyo3::exceptions::PyValueError::new_err(text),
        _ => SandboxError::new_err(text),
    }
}

/// A user id as the pool takes it: its `str()` (the seed passes a `UUID`).
pub(crate) fn user_of(user_id: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(user_id.str()?.to_string())
}

#[pymethods]
impl PySandboxPool {
    /// Starts the pool. `config` is a TOML, YAML or JSON file as `pool-inspect --config`
    /// reads it; keywords override its `[pool]` section (`image=`, `users_root=`,
    /// `name_prefix=`, `memory="2GiB"`, ...) and `tools={...}` its `[tools]` section.
    #[new]
    #[pyo3(signature = (config = None, *, tools = None, **pool))]
    fn new(
        py: Python<'_>,
        config: Option<PathBuf>,
        tools: Option<Bound<'_, PyDict>>,
        pool: Option<Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config = configure(config, tools.as_ref(), pool.as_ref())?;
        let pool_config = config.pool_config();
        let engines = config.engines.clone();
        let started = py.detach(|| {
            runtime().block_on(async {
                // `[[engines]]`: a fleet over them; none: the local daemon's pool alone.
                if !engines.is_empty() {
                    return Fleet::start(engines, pool_config)
                        .await
                        .map_err(|e| pool_error(&e));
                }
                let docker = sandbox_pool::connect()
                    .await
                    .map_err(|e| DaemonUnavailable::new_err(chain(&e)))?;
                SandboxPool::start(docker, pool_config)
                    .await
                    .map(Fleet::from)
                    .map_err(|e| pool_error(&e))
            })
        })?;
        Ok(Self {
            pool: Mutex::new(Some(started)),
            config,
        })
    }

    /// The user's sandbox, made, adopted or repaired if needed; returns its container name.
    fn ensure(&self, py: Python<'_>, user_id: &Bound<'_, PyAny>) -> PyResult<String> {
        let (pool, user) = (self.pool()?, user_of(user_id)?);
        py.detach(|| runtime().block_on(pool.ensure(&user)))
            .map(|sandbox| sandbox.name)
            .map_err(|e| pool_error(&e))
    }

    /// Restarts the user's idle timer (calls do this themselves).
    fn mark_active(&self, user_id: &Bound<'_, PyAny>) -> PyResult<()> {
        self.pool()?.mark_active(&user_of(user_id)?);
        Ok(())
    }

    /// Removes the user's sandbox (their files stay); whether there was one.
    fn remove(&self, py: Python<'_>, user_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let (pool, user) = (self.pool()?, user_of(user_id)?);
        py.detach(|| runtime().block_on(pool.remove(&user)))
            .map_err(|e| pool_error(&e))
    }

    /// The sandboxes this pool holds, as dicts (user, container, state, idle time, channel).
    fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let snapshot = self.pool()?.snapshot();
        let value = serde_json::to_value(&snapshot)
            .map_err(|e| SandboxError::new_err(format!("listing the pool: {e}")))?;
        convert::to_python(py, &value)
    }

    /// The Docker engines, as dicts (name, host, up, sandboxes, error).
    fn engines<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let engines = self.pool()?.engines();
        let value = serde_json::to_value(&engines)
            .map_err(|e| SandboxError::new_err(format!("listing the engines: {e}")))?;
        convert::to_python(py, &value)
    }

    /// The host folder mounted as `/workspace` in the user's sandbox.
    fn user_root(&self, user_id: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
        Ok(self.pool()?.user_root(&user_of(user_id)?))
    }

    /// The pool's name: its containers are `<name>-<user>`.
    #[getter]
    fn name(&self) -> String {
        self.config.pool.name_prefix.clone()
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Stops the reaper and lets the pool go; its sandboxes are kept for the next start to
    /// adopt, or removed with `remove=True`. Calling it again does nothing.
    #[pyo3(signature = (*, remove = false))]
    fn close(&self, py: Python<'_>, remove: bool) -> PyResult<()> {
        let Some(pool) = self.pool.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(());
        };
        let policy = if remove {
            ShutdownPolicy::Remove
        } else {
            ShutdownPolicy::Keep
        };
        py.detach(|| runtime().block_on(pool.shutdown(policy)))
            .map_err(|e| pool_error(&e))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py, false)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "SandboxPool(name={:?}, image={:?}, closed={})",
            self.config.pool.name_prefix,
            self.config.pool.image,
            self.closed()
        )
    }
}

//! [`ToolsConfig`]: the tools' settings, serde-deserializable like the pool's.

use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::args::{
    DEFAULT_FILE_TIMEOUT, DEFAULT_PYTHON_TIMEOUT, DEFAULT_SHELL_TIMEOUT, MAX_TIMEOUT, TimeoutLimits,
};
use crate::quota::QuotaConfig;

/// Default head kept of each stream of `shell` and `run_python`: 32 KiB.
pub const DEFAULT_OUTPUT_HEAD: ByteSize = ByteSize::kib(32);
/// Default tail kept of each stream of `shell` and `run_python`: 32 KiB.
pub const DEFAULT_OUTPUT_TAIL: ByteSize = ByteSize::kib(32);

/// How a sandbox tool's call reaches the sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Over the sandbox's channel, one long-lived exec of the runner, a few milliseconds a
    /// call; through an exec of its own when the channel is down.
    #[default]
    Channel,
    /// One `docker exec` per call (40-50 ms of daemon and runtime work each).
    Exec,
}

/// How the tools run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsConfig {
    /// Run commands as this user instead of the pool's sandbox user (the seed's
    /// `ZCBOT_SANDBOX_EXEC_USER`).
    pub exec_user: Option<String>,
    /// `shell` without a `timeout`.
    #[serde(with = "humantime_serde")]
    pub shell_timeout: Duration,
    /// `run_python` without a `timeout`.
    #[serde(with = "humantime_serde")]
    pub python_timeout: Duration,
    /// The file tools (and grep without a `timeout`).
    #[serde(with = "humantime_serde")]
    pub file_timeout: Duration,
    /// Cap on any `timeout` a model asks for.
    #[serde(with = "humantime_serde")]
    pub max_timeout: Duration,
    /// Head kept of each stream of `shell` and `run_python`; the middle beyond head + tail is
    /// dropped and counted.
    pub output_head: ByteSize,
    /// Tail kept of each stream of `shell` and `run_python`.
    pub output_tail: ByteSize,
    /// The disk quota of `write` and `edit`.
    pub quotas: QuotaConfig,
    /// How calls reach the sandbox.
    pub transport: Transport,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            exec_user: None,
            shell_timeout: DEFAULT_SHELL_TIMEOUT,
            python_timeout: DEFAULT_PYTHON_TIMEOUT,
            file_timeout: DEFAULT_FILE_TIMEOUT,
            max_timeout: MAX_TIMEOUT,
            output_head: DEFAULT_OUTPUT_HEAD,
            output_tail: DEFAULT_OUTPUT_TAIL,
            quotas: QuotaConfig::default(),
            transport: Transport::default(),
        }
    }
}

impl ToolsConfig {
    /// The deadlines as the argument checks take them.
    pub fn timeouts(&self) -> TimeoutLimits {
        TimeoutLimits {
            shell_default: self.shell_timeout,
            python_default: self.python_timeout,
            file_default: self.file_timeout,
            max: self.max_timeout,
        }
    }
}

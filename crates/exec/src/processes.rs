//! A container's process list, read where it is true: `docker top` for runtimes whose
//! containers are processes of the host's kernel (runc and its kin: the daemon runs `ps` on the
//! host, and nothing starts in the container), the runner's `ps` in the container for the
//! others (gVisor runs its own kernel: `docker top` there lists whichever host processes
//! happen to carry the sandbox's pids).

use std::time::Duration;

use bollard::query_parameters::TopOptionsBuilder;
use sandbox_protocol::{ProcessList, cmd};
use serde::Serialize;

use crate::client::{ExecClient, read_report};
use crate::error::ExecError;

/// Bound on the daemon creating and starting the `ps` exec.
const PS_START_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the `ps` exec's answer once started.
const PS_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The `ps` columns asked of the daemon; the arguments last, since the daemon splits every
/// column before them at spaces and keeps the rest of the line whole.
const TOP_COLUMNS: &str = "-o pid,ppid,uid,stat,etimes,comm,args";

/// One process of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    /// Process id: in the container's pid namespace when read inside, the host's when read
    /// by `docker top`.
    pub pid: u32,
    /// Parent process id, in the same namespace.
    pub ppid: u32,
    /// Uid (effective from `docker top`, real from inside).
    pub uid: u32,
    /// State (`R`, `S`, `Z`, ...; `docker top` adds `ps`'s flags after the letter).
    pub state: String,
    /// Seconds since it started.
    pub elapsed_secs: u64,
    /// Its name (`comm`; the channel's serve process puts its calls served there).
    pub name: String,
    /// Its command line.
    pub args: String,
}

/// How a container's processes were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessSource {
    /// The daemon ran `ps` on the host (`docker top`).
    Top,
    /// The runner read `/proc` in the container (`sandbox-runner ps`).
    Runner,
}

/// A container's processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessTable {
    /// The processes (the runner's own `ps` left out).
    pub processes: Vec<Process>,
    /// Whether the list is all of them: the runner lists only as many as fit in one report.
    pub complete: bool,
    /// Where it came from.
    pub source: ProcessSource,
}

/// Whether `docker top` sees the processes of a container run by `runtime` (its
/// `HostConfig.Runtime`; the daemon fills in its default): only the runtimes that make a
/// container out of host processes. Any other name reads the list inside, which is right for
/// every runtime, only slower.
pub fn top_sees(runtime: Option<&str>) -> bool {
    matches!(
        runtime.unwrap_or_default(),
        "" | "runc" | "crun" | "youki" | "io.containerd.runc.v2" | "io.containerd.runtime.v1.linux"
    )
}

impl ExecClient {
    /// The processes of `container`, which runs under `runtime` (its `HostConfig.Runtime`):
    /// by `docker top` where that sees them ([`top_sees`]), else by an exec of the runner's
    /// `ps`, as the container's own user.
    pub async fn processes(
        &self,
        container: &str,
        runtime: Option<&str>,
    ) -> Result<ProcessTable, ExecError> {
        if top_sees(runtime) {
            self.top(container).await
        } else {
            self.ps(container).await
        }
    }

    async fn top(&self, container: &str) -> Result<ProcessTable, ExecError> {
        let options = TopOptionsBuilder::new().ps_args(TOP_COLUMNS).build();
        let top = self
            .docker()
            .top_processes(container, Some(options))
            .await
            .map_err(|e| {
                ExecError::classify("docker top", container, e, |container, source| {
                    ExecError::ListProcesses {
                        container,
                        why: "docker top failed".to_owned(),
                        source: Some(source),
                    }
                })
            })?;
        let processes = top
            .processes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|row| from_top_row(&row))
            .collect();
        Ok(ProcessTable {
            processes,
            complete: true,
            source: ProcessSource::Top,
        })
    }

    async fn ps(&self, container: &str) -> Result<ProcessTable, ExecError> {
        let failed = |why: String| ExecError::ListProcesses {
            container: container.to_owned(),
            why,
            source: None,
        };
        let config = self.runner_exec([cmd::PS], None, false);
        let start = self.start_attached(container, config);
        let (_, output, _) = tokio::time::timeout(PS_START_TIMEOUT, start)
            .await
            .map_err(|_| failed("the daemon did not start the runner's ps in time".to_owned()))??;
        let read = read_report(output, "the runner's ps", ProcessList::check);
        let list = tokio::time::timeout(PS_READ_TIMEOUT, read)
            .await
            .map_err(|_| failed("the runner's ps did not answer in time".to_owned()))?
            .map_err(|e| failed(e.to_string()))?;
        Ok(ProcessTable {
            complete: !list.truncated,
            processes: list
                .processes
                .into_iter()
                .map(|p| Process {
                    pid: p.pid,
                    ppid: p.ppid,
                    uid: p.uid,
                    state: p.state.to_string(),
                    elapsed_secs: p.elapsed_secs,
                    name: p.name,
                    args: p.args,
                })
                .collect(),
            source: ProcessSource::Runner,
        })
    }
}

/// A row of `docker top` with [`TOP_COLUMNS`]; `None` when it does not have their shape.
fn from_top_row(row: &[String]) -> Option<Process> {
    let [pid, ppid, uid, state, elapsed, name, args] = row else {
        return None;
    };
    Some(Process {
        pid: pid.parse().ok()?,
        ppid: ppid.parse().ok()?,
        uid: uid.parse().ok()?,
        state: state.clone(),
        elapsed_secs: elapsed.parse().unwrap_or(0),
        name: name.clone(),
        args: args.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_kernel_runtimes_are_read_with_top() {
        for runtime in [
            None,
            Some("runc"),
            Some("io.containerd.runc.v2"),
            Some("crun"),
        ] {
            assert!(top_sees(runtime), "{runtime:?}");
        }
        for runtime in [Some("runsc"), Some("gvisor"), Some("kata-runtime")] {
            assert!(!top_sees(runtime), "{runtime:?}");
        }
    }

    #[test]
    fn top_rows_parse_by_position_with_the_arguments_whole() {
        let row: Vec<String> = ["42", "7", "61000", "S+", "12", "bash", "bash -c sleep 1"]
            .map(str::to_owned)
            .into();
        let p = from_top_row(&row).expect("parses");
        assert_eq!((p.pid, p.ppid, p.uid), (42, 7, 61000));
        assert_eq!(p.args, "bash -c sleep 1");
        assert!(from_top_row(&row[..3]).is_none());
    }
}

//! Shared harness of the end-to-end tests: the daemon, the image, and sandbox containers that
//! are labelled as test containers and removed by a guard even when a test fails.
//!
//! Never skips: without a daemon or an image, every test fails with a message that says what
//! to run (`just test` does all of it).

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptionsBuilder;
use sandbox_exec::ExecClient;

mod daemon;
pub use daemon::SecondDaemon;

/// Label on every container a test creates: `zcbot.test=1`.
pub const TEST_LABEL: &str = "zcbot.test";
/// Label naming the test that made a container.
pub const TEST_NAME_LABEL: &str = "zcbot.test.name";
/// The sandbox uid of the image the tests build (`just image`, default config).
pub const SANDBOX_UID: u32 = sandbox_pool::image::DEFAULT_UID;
/// The sandbox user of that image.
pub const SANDBOX_USER: &str = sandbox_pool::image::DEFAULT_USER;

/// Connects to the daemon, or fails the test loudly.
pub async fn docker() -> Docker {
    match sandbox_exec::connect().await {
        Ok(d) => match d.ping().await {
            Ok(_) => d,
            Err(e) => panic!(
                "the Docker daemon does not answer ({e}); run the tests with `just test`, which starts one"
            ),
        },
        Err(e) => panic!(
            "cannot connect to the Docker daemon ({e}); run the tests with `just test`, which starts one"
        ),
    }
}

/// The sandbox image under test: `SANDBOX_IMAGE`, else the tag `just image` wrote.
pub fn image() -> String {
    if let Ok(tag) = std::env::var("SANDBOX_IMAGE") {
        return tag;
    }
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/sandbox-image/tag");
    match std::fs::read_to_string(file) {
        Ok(tag) => tag.trim().to_owned(),
        Err(_) => panic!("no sandbox image: run `just image` (or the whole `just test`) first"),
    }
}

/// The OCI runtime the suite runs its sandboxes with: `SANDBOX_RUNTIME` (`runsc` for gVisor,
/// as `just test-runsc` sets it), else the daemon's default.
pub fn runtime() -> Option<String> {
    std::env::var("SANDBOX_RUNTIME")
        .ok()
        .filter(|r| !r.is_empty())
}

/// Whether the suite's sandboxes run under gVisor ([`runtime`] is gVisor on this daemon).
pub async fn gvisor() -> bool {
    sandbox_pool::runtime::is_gvisor(&docker().await, runtime().as_deref())
        .await
        .expect("the daemon's runtimes")
}

/// The host's pids limit and `nproc` ulimit the pool gives a sandbox of `pids_limit`
/// processes under the suite's runtime.
pub async fn process_limits(pids_limit: i64) -> sandbox_pool::runtime::ProcessLimits {
    sandbox_pool::runtime::ProcessLimits::for_runtime(pids_limit, gvisor().await)
}

/// Labels for a container made by test `name`.
pub fn test_labels(name: &str) -> HashMap<String, String> {
    HashMap::from([
        (TEST_LABEL.to_owned(), "1".to_owned()),
        (TEST_NAME_LABEL.to_owned(), name.to_owned()),
    ])
}

/// A unique suffix for names.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

/// A user root on the host, owned by the sandbox uid so the sandbox user can write it.
pub fn user_root() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("zcbot-test-root-")
        .tempdir()
        .expect("a temporary directory");
    chown_to_sandbox(dir.path());
    dir
}

/// Gives `path` to the sandbox uid (the tests run as root, as CI does).
pub fn chown_to_sandbox(path: &std::path::Path) {
    let id = Some(rustix::process::Uid::from_raw(SANDBOX_UID));
    let gid = Some(rustix::process::Gid::from_raw(SANDBOX_UID));
    rustix::fs::chown(path, id, gid).expect("chown the user root (the tests run as root)");
}

/// The pool configuration of the sandboxes that tests make below the pool ([`TestSandbox`]):
/// the pool's defaults with room for the largest inputs, under the suite's runtime.
pub fn sandbox_config() -> sandbox_pool::PoolConfig {
    sandbox_pool::PoolConfig {
        image: image(),
        memory: sandbox_pool::bytesize::ByteSize::mib(512),
        runtime: runtime(),
        ..Default::default()
    }
}

/// Removes a container from outside the code under test (a fault, or the end of a test).
pub async fn force_remove(docker: &Docker, id: &str) {
    sandbox_pool::remove_container(docker, id)
        .await
        .expect("remove the container");
}

/// A container's processes as the library lists them ([`ExecClient::processes`]: `docker top`
/// on the host, or the runner inside under gVisor), one `args` string each, without the init,
/// the container's main `sleep infinity` and a channel's serve process.
pub async fn processes(docker: &Docker, container: &str) -> Vec<String> {
    try_processes(docker, container)
        .await
        .unwrap_or_else(|| panic!("no running container {container} to list processes of"))
}

/// As [`processes`], or `None` when the container is gone or stopped.
pub async fn try_processes(docker: &Docker, container: &str) -> Option<Vec<String>> {
    let table = match all_processes(docker, container).await {
        Err(e) if e.is_sandbox_gone() => return None,
        other => other.expect("list the container's processes"),
    };
    let args = table
        .into_iter()
        .map(|p| p.args)
        // The sandbox's own: its init, its main process, and its channel's serve process.
        .filter(|args| {
            !args.contains("docker-init")
                && args != "sleep infinity"
                && !args.starts_with("/sandbox/bin/sandbox-runner serve ")
        })
        .collect();
    Some(args)
}

/// Every process of a container, as the library lists them for its runtime.
pub async fn all_processes(
    docker: &Docker,
    container: &str,
) -> Result<Vec<sandbox_exec::Process>, sandbox_exec::ExecError> {
    let runtime = match docker.inspect_container(container, None).await {
        Ok(info) => info.host_config.and_then(|h| h.runtime),
        Err(_) => None,
    };
    let table = ExecClient::new(docker.clone())
        .processes(container, runtime.as_deref())
        .await?;
    assert!(
        table.complete,
        "the process list of {container} was cut short"
    );
    Ok(table.processes)
}

/// A running sandbox container made directly through the API (below the pool), removed on
/// drop.
pub struct TestSandbox {
    /// The daemon.
    pub docker: Docker,
    /// Container id.
    pub id: String,
    /// The user root mounted at `/workspace`.
    pub root: tempfile::TempDir,
}

impl std::fmt::Debug for TestSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSandbox").field("id", &self.id).finish()
    }
}

impl TestSandbox {
    /// Starts a hardened sandbox for test `name`.
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, |_| {}).await
    }

    /// Starts a sandbox for test `name`, hardened as the pool hardens its own
    /// ([`sandbox_pool::spec::host_config`]) for [`sandbox_config`] after `tweak` adjusts it.
    /// Unlike the pool's, its main process runs as the sandbox user, so that an exec that
    /// names no user runs as the sandbox user too.
    pub async fn start_with(name: &str, tweak: impl FnOnce(&mut sandbox_pool::PoolConfig)) -> Self {
        let docker = docker().await;
        let root = user_root();
        let mut config = sandbox_config();
        tweak(&mut config);
        let host = sandbox_pool::spec::host_config(&config, root.path(), gvisor().await);
        let container_name = format!("zcbot-test-{name}-{}", unique()).replace('_', "-");
        let body = ContainerCreateBody {
            image: Some(config.image.clone()),
            user: Some(SANDBOX_USER.to_owned()),
            labels: Some(test_labels(name)),
            host_config: Some(host),
            ..Default::default()
        };
        let created = docker
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::new()
                        .name(&container_name)
                        .build(),
                ),
                body,
            )
            .await
            .expect("create the test container");
        let sandbox = Self {
            docker: docker.clone(),
            id: created.id,
            root,
        };
        docker
            .start_container(&sandbox.id, None)
            .await
            .expect("start the test container");
        sandbox
    }

    /// An exec client on this daemon.
    pub fn exec(&self) -> ExecClient {
        ExecClient::new(self.docker.clone())
    }

    /// Calls over `transport`, as the sandbox user (a channel is opened for it).
    pub async fn runner(&self, transport: Transport) -> Runner {
        let exec = self.exec();
        let channel = match transport {
            Transport::Exec => None,
            Transport::Channel => Some(
                sandbox_exec::Channel::open(&exec, &self.id, Some(SANDBOX_USER), &unique())
                    .await
                    .expect("open a channel"),
            ),
        };
        Runner { exec, channel }
    }

    /// The container's processes as the daemon sees them (`docker top`), one `args` string
    /// each, without the init and the container's main `sleep infinity`.
    pub async fn processes(&self) -> Vec<String> {
        processes(&self.docker, &self.id).await
    }

    /// Waits (bounded) until no process of a call is left, and returns what is left.
    pub async fn settle(&self, limit: Duration) -> Vec<String> {
        let until = std::time::Instant::now() + limit;
        loop {
            let left = self.processes().await;
            if left.is_empty() || std::time::Instant::now() >= until {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// How a test's calls reach the sandbox: an exec each, or the sandbox's channel.
pub use sandbox_tools::Transport;

/// Runs calls over one transport, with [`ExecClient::run`]'s signature.
#[derive(Debug, Clone)]
pub struct Runner {
    exec: ExecClient,
    channel: Option<sandbox_exec::Channel>,
}

impl Runner {
    /// Runs `req` in `container` (for a channel: the container it was opened in).
    pub async fn run(
        &self,
        container: &str,
        req: sandbox_exec::ExecRequest,
    ) -> Result<sandbox_exec::Outcome, sandbox_exec::ExecError> {
        match &self.channel {
            Some(channel) => channel.run(req).await,
            None => self.exec.run(container, req).await,
        }
    }

    /// The channel, when the runner uses one.
    pub fn channel(&self) -> Option<&sandbox_exec::Channel> {
        self.channel.as_ref()
    }
}

/// Generates, for each `async fn name(transport) { .. }`, a module `name` with one test per
/// transport (`name::exec`, `name::channel`): the suite is written once and run on both.
#[macro_export]
macro_rules! on_both_transports {
    ($($(#[$meta:meta])* async fn $name:ident($t:ident) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($t: $crate::Transport) $body

            #[tokio::test(flavor = "multi_thread")]
            async fn exec() {
                run($crate::Transport::Exec).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn channel() {
                run($crate::Transport::Channel).await
            }
        }
    )*};
}

impl Drop for TestSandbox {
    fn drop(&mut self) {
        // Drop cannot await; the tests run on a multi-thread runtime, so block this worker
        // for the removal. Removal errors are reported, not panicked on (we may be unwinding).
        let docker = self.docker.clone();
        let id = self.id.clone();
        let remove = async move { sandbox_pool::remove_container(&docker, &id).await };
        let result = match tokio::runtime::Handle::try_current() {
            Ok(handle) => tokio::task::block_in_place(|| handle.block_on(remove)),
            Err(_) => tokio::runtime::Runtime::new()
                .expect("a runtime for cleanup")
                .block_on(remove),
        };
        if let Err(e) = result {
            eprintln!("warning: removing test container {}: {e}", self.id);
        }
    }
}

/// A pool configuration for test `name`: a unique pool name (so tests never see each other's
/// containers), test labels, short timings, and the image under test.
pub fn pool_config(name: &str) -> sandbox_pool::PoolConfig {
    sandbox_pool::PoolConfig {
        image: image(),
        name_prefix: format!("zt-{}", unique()),
        labels: test_labels(name).into_iter().collect(),
        memory: sandbox_pool::bytesize::ByteSize::mib(256),
        runtime: runtime(),
        ..Default::default()
    }
}

/// A pool under test with its users' roots in a temporary folder. Dropping it removes every
/// container carrying its pool label, whatever the test did.
pub struct TestPool {
    /// The pool.
    pub pool: sandbox_pool::SandboxPool,
    /// Holds one folder per user.
    pub users: tempfile::TempDir,
}

impl std::fmt::Debug for TestPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPool")
            .field("pool", &self.pool)
            .finish()
    }
}

impl std::ops::Deref for TestPool {
    type Target = sandbox_pool::SandboxPool;
    fn deref(&self) -> &Self::Target {
        &self.pool
    }
}

impl TestPool {
    /// Starts a pool with `config` (see [`pool_config`]).
    pub async fn start(config: sandbox_pool::PoolConfig) -> Self {
        let users = tempfile::Builder::new()
            .prefix("zcbot-test-users-")
            .tempdir()
            .expect("a temporary directory");
        let pool = Self::start_on(config, users.path()).await;
        Self { pool, users }
    }

    /// Starts another pool instance on the same users' folder (a restarted service).
    pub async fn start_on(
        config: sandbox_pool::PoolConfig,
        users: &std::path::Path,
    ) -> sandbox_pool::SandboxPool {
        sandbox_pool::SandboxPool::start_with_roots(docker().await, config, users.to_path_buf())
            .await
            .expect("start the pool")
    }

    /// This pool's containers as the daemon lists them (all states).
    pub async fn containers(&self) -> Vec<bollard::models::ContainerSummary> {
        list_pool(&self.pool.docker().clone(), &self.pool.config().name_prefix).await
    }
}

/// Containers with pool label `pool`.
pub async fn list_pool(docker: &Docker, pool: &str) -> Vec<bollard::models::ContainerSummary> {
    sandbox_pool::list_containers(docker, pool)
        .await
        .expect("list the pool's containers")
}

impl Drop for TestPool {
    fn drop(&mut self) {
        let docker = self.pool.docker().clone();
        let pool = self.pool.config().name_prefix.clone();
        let sweep = async move {
            for c in list_pool(&docker, &pool).await {
                let _ = sandbox_pool::remove_container(&docker, &c.id.unwrap_or_default()).await;
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => tokio::task::block_in_place(|| handle.block_on(sweep)),
            Err(_) => tokio::runtime::Runtime::new()
                .expect("a runtime for cleanup")
                .block_on(sweep),
        }
        unmount_disks_under(self.users.path());
    }
}

/// Bytes `du -s -B1` counts under `path` (what an operator would compare usage with).
pub fn du_bytes(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("du")
        .args(["-s", "-B1"])
        .arg(path)
        .output()
        .expect("du");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du's number")
}

/// Unmounts every user disk under `dir` (a test's users folder), whatever the test did: a
/// mount left behind keeps its loop device, and the folder could not go.
pub fn unmount_disks_under(dir: &std::path::Path) {
    for at in sandbox_pool::disk::our_mounts() {
        if at.starts_with(dir) {
            let _ = sandbox_pool::disk::unmount(&at);
        }
    }
}

/// A host executor standing in for the agent service's own (a narrow trait, not Docker): it
/// offers the sandbox tools it is told to plus `web_search`, answering that one itself.
#[derive(Debug, Clone)]
pub struct FakeHost {
    offered: Vec<String>,
}

impl FakeHost {
    /// Offers all seven sandbox tools and `web_search`.
    pub fn all() -> Self {
        Self::offering(&sandbox_tools::SANDBOX_TOOLS)
    }

    /// Offers these sandbox tools and `web_search`.
    pub fn offering(tools: &[&str]) -> Self {
        let mut offered: Vec<String> = tools.iter().map(|t| t.to_string()).collect();
        offered.push("web_search".to_owned());
        Self { offered }
    }
}

#[async_trait::async_trait]
impl sandbox_tools::Executor for FakeHost {
    fn has_tool(&self, name: &str) -> bool {
        self.offered.iter().any(|t| t == name)
    }

    fn schemas(&self) -> Vec<serde_json::Value> {
        self.offered
            .iter()
            .map(|name| serde_json::json!({"name": name, "description": "host's own", "parameters": {}}))
            .collect()
    }

    async fn call_tool(
        &self,
        name: &str,
        args: serde_json::Value,
        _ctx: &sandbox_tools::CallContext,
    ) -> sandbox_tools::ToolResult {
        sandbox_tools::ToolResult::new(format!("host ran {name} with {args}"), 0)
    }
}

/// A pool plus a `DockerExecutor` for one user working at the root of their folder.
pub struct TestTools {
    /// The pool (removed on drop).
    pub pool: TestPool,
    /// The executor.
    pub tools: sandbox_tools::DockerExecutor,
    /// The user's root on the host.
    pub root: std::path::PathBuf,
    host: FakeHost,
    config: sandbox_tools::ToolsConfig,
}

impl std::fmt::Debug for TestTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestTools")
            .field("root", &self.root)
            .finish()
    }
}

impl TestTools {
    /// Tools for user `u` of a fresh pool for test `name`.
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, FakeHost::all(), sandbox_tools::ToolsConfig::default()).await
    }

    /// Tools for user `u` of a fresh pool made with `config`.
    pub async fn start_on_pool(config: sandbox_pool::PoolConfig) -> Self {
        Self::start_full(
            config,
            FakeHost::all(),
            sandbox_tools::ToolsConfig::default(),
        )
        .await
    }

    /// As [`TestTools::start`] with a host and tools configuration.
    pub async fn start_with(
        name: &str,
        host: FakeHost,
        config: sandbox_tools::ToolsConfig,
    ) -> Self {
        Self::start_full(pool_config(name), host, config).await
    }

    pub async fn start_full(
        pool_config: sandbox_pool::PoolConfig,
        host: FakeHost,
        config: sandbox_tools::ToolsConfig,
    ) -> Self {
        let pool = TestPool::start(pool_config).await;
        let root = pool.user_root("u");
        std::fs::create_dir_all(&root).expect("user root");
        chown_to_sandbox(&root);
        let tools = sandbox_tools::DockerExecutor::with_config(
            std::sync::Arc::new(host.clone()),
            pool.pool.clone(),
            config.clone(),
            "u",
            root.clone(),
        );
        Self {
            pool,
            tools,
            root,
            host,
            config,
        }
    }

    /// The same tools with calls over `transport`; on the channel, with the channel open (a
    /// first call would otherwise go through an exec while it opens).
    pub async fn on(self, transport: Transport) -> Self {
        let this = self.on_cold(transport);
        if transport == Transport::Channel {
            this.channel_opens().await;
        }
        this
    }

    /// As [`TestTools::on`] without making the sandbox (for a test that checks none is made).
    pub fn on_cold(mut self, transport: Transport) -> Self {
        self.config.transport = transport;
        self.tools = sandbox_tools::DockerExecutor::with_config(
            std::sync::Arc::new(self.host.clone()),
            self.pool.pool.clone(),
            self.config.clone(),
            "u",
            self.root.clone(),
        );
        self
    }

    /// Waits for the sandbox's channel to be open, and fails the test if it does not open.
    pub async fn channel_opens(&self) {
        let open = self.tools.warm_up().await.expect("the sandbox");
        assert!(open, "the sandbox's channel opens");
    }

    /// Calls `tool` with `args` and a fresh context.
    pub async fn call(&self, tool: &str, args: serde_json::Value) -> sandbox_tools::ToolResult {
        use sandbox_tools::Executor;
        self.tools
            .call_tool(tool, args, &sandbox_tools::CallContext::new("test-task"))
            .await
    }
}

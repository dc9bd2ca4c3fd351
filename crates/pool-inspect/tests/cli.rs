//! `pool-inspect` as an operator runs it, against the real daemon and the sandbox image.
//!
//! Never skips: without a daemon or an image every test fails saying to run `just test`.
//! Every pool here has a unique name (`zpi-<random>`) and the label `zcbot.test=1`, and a
//! guard removes every container carrying its pool label when the test ends, even on panic.

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use sandbox_pool::bollard::Docker;
use sandbox_pool::bollard::models::ContainerSummary;
use sandbox_pool::bollard::query_parameters::StopContainerOptionsBuilder;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pool-inspect");
const USER: &str = "u1";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The daemon, or a failed test that says what to run.
async fn docker() -> Docker {
    let docker = match sandbox_pool::connect().await {
        Ok(d) => d,
        Err(e) => panic!(
            "cannot reach the Docker daemon ({e}); run the tests with `just test`, which starts one and builds the image"
        ),
    };
    if let Err(e) = docker.ping().await {
        panic!("the Docker daemon does not answer ({e}); run the tests with `just test`");
    }
    docker
}

/// The sandbox image under test (`SANDBOX_IMAGE`, else the tag `just image` wrote), checked
/// to be on the daemon.
fn image() -> String {
    let tag = std::env::var("SANDBOX_IMAGE").ok().unwrap_or_else(|| {
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/sandbox-image/tag"
        );
        std::fs::read_to_string(file)
            .unwrap_or_else(|_| {
                panic!("no sandbox image tag at {file}: run `just test` (or `just image`) first")
            })
            .trim()
            .to_owned()
    });
    runtime().block_on(async {
        if let Err(e) = docker().await.inspect_image(&tag).await {
            panic!("sandbox image {tag} is not on the daemon ({e}): run `just test` (or `just image`) first");
        }
    });
    tag
}

/// A random suffix (no extra dependency: the std hasher is seeded randomly per process).
fn unique() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("{:010x}", h.finish() & 0xff_ffff_ffff)
}

/// A unique pool of this test: its configuration file (image under test, test labels, small
/// memory), a temporary users root, and the guard that removes its containers.
struct TestPool {
    name: String,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl TestPool {
    fn new(test: &str) -> Self {
        Self::with_image(test, &image())
    }

    fn with_image(test: &str, image: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("zpi-test-")
            .tempdir()
            .expect("a temporary directory");
        let pool = Self {
            name: format!("zpi-{}", unique()),
            config: dir.path().join("pool.toml"),
            dir,
        };
        pool.write_config("pool.toml", test, image, "");
        pool
    }

    /// Writes a configuration file next to the default one, with `extra` lines in `[pool]`.
    fn write_config(&self, file: &str, test: &str, image: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join(file);
        let text = format!(
            "[pool]\nimage = \"{image}\"\nmemory = \"256MiB\"\n{extra}\n\
             [pool.labels]\n\"zcbot.test\" = \"1\"\n\"zcbot.test.name\" = \"{test}\"\n"
        );
        std::fs::write(&path, text).expect("write the configuration");
        path
    }

    fn users_root(&self) -> PathBuf {
        self.dir.path().join("users")
    }

    /// `pool-inspect --config <file> --pool <unique> --users-root <tmp> ARGS...`.
    fn cmd_with(&self, config: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("SANDBOX_CONFIG")
            .env("NO_COLOR", "1")
            .arg("--config")
            .arg(config)
            .args(["--pool", &self.name])
            .arg("--users-root")
            .arg(self.users_root())
            .args(args)
            .timeout(Duration::from_secs(120));
        cmd
    }

    fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_with(&self.config, args)
    }

    /// Runs and returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        output(self.cmd(args))
    }

    /// `ls --json`, parsed.
    fn ls(&self) -> Vec<Value> {
        let (code, stdout, stderr) = self.run(&["ls", "--json"]);
        assert_eq!(code, 0, "ls --json: {stderr}");
        serde_json::from_str::<Vec<Value>>(&stdout)
            .unwrap_or_else(|e| panic!("ls --json printed more than JSON ({e}): {stdout}"))
    }

    /// This pool's containers, as the daemon lists them (all states).
    fn containers(&self) -> Vec<ContainerSummary> {
        runtime().block_on(list_pool(&self.name))
    }
}

async fn list_pool(pool: &str) -> Vec<ContainerSummary> {
    sandbox_pool::list_containers(&docker().await, pool)
        .await
        .expect("list the pool's containers")
}

impl Drop for TestPool {
    fn drop(&mut self) {
        // Whatever the test did or where it panicked: nothing of this pool stays behind.
        let pool = self.name.clone();
        runtime().block_on(async move {
            let Ok(docker) = sandbox_pool::connect().await else {
                return;
            };
            for c in list_pool(&pool).await {
                let id = c.id.unwrap_or_default();
                if let Err(e) = sandbox_pool::remove_container(&docker, &id).await {
                    eprintln!("warning: removing a test container of pool {pool}: {e}");
                }
            }
        });
        // User disks the test left mounted (its temporary folder could not go otherwise).
        e2e_tests::unmount_disks_under(self.dir.path());
    }
}

fn output(mut cmd: Command) -> (i32, String, String) {
    let out = cmd.output().expect("run pool-inspect");
    (
        out.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts a failure told in exactly one `pool-inspect: ...` line on stderr.
fn assert_one_line_failure(code: i32, stderr: &str, wanted_code: i32, needle: &str) {
    assert_eq!(code, wanted_code, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, not: {stderr}");
    assert!(lines[0].starts_with("pool-inspect: "), "{stderr}");
    assert!(lines[0].contains(needle), "{needle:?} not in {stderr}");
}

#[test]
fn help_exits_0_and_bad_flags_exit_2() {
    for args in [
        &["--help"][..],
        &["ls", "--help"],
        &["call", "--help"],
        &["--version"],
    ] {
        let (code, stdout, _) = output({
            let mut c = Command::new(BIN);
            c.args(args);
            c
        });
        assert_eq!(code, 0, "{args:?}");
        assert!(!stdout.is_empty());
    }
    for args in [
        &["--bogus"][..],
        &["ls", "--bogus"],
        &[],
        &["call", "u1"],
        &["frobnicate"],
    ] {
        let mut c = Command::new(BIN);
        c.args(args);
        let (code, _, stderr) = output(c);
        assert_eq!(code, 2, "{args:?}: {stderr}");
    }
}

#[test]
fn image_status_json_parses() {
    let pool = TestPool::new("image_status_json_parses");
    let (code, stdout, stderr) = pool.run(&["image", "status", "--json"]);
    assert_eq!(
        code, 0,
        "{stderr} (the runner comes from `just runner`, which `just test` runs)"
    );
    let status: Value = serde_json::from_str(&stdout).expect("JSON");
    assert!(
        status["tag"]
            .as_str()
            .expect("tag")
            .starts_with("zcbot-sandbox:")
    );
    assert_eq!(status["inputs_hash"].as_str().expect("hash").len(), 64);
    assert!(status["present"].is_boolean());
    assert!(status["base"]["reference"].is_string());
}

#[test]
fn ls_json_of_an_empty_pool_is_an_empty_array() {
    let pool = TestPool::new("ls_json_empty");
    let (code, stdout, stderr) = pool.run(&["ls", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "[]");
    let (code, stdout, _) = pool.run(&["ls"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("USER "), "{stdout}");
}

#[test]
fn call_makes_a_sandbox_that_ls_and_show_read_back_and_rm_removes() {
    let pool = TestPool::new("call_ls_show_rm");
    let (code, stdout, stderr) = pool.run(&["call", USER, "shell", r#"{"command":"echo hi"}"#]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "[stdout]\nhi\n[exit 0]\n");
    assert!(stderr.contains("exit code: 0 (took "), "{stderr}");

    let list = pool.ls();
    assert_eq!(list.len(), 1, "{list:?}");
    let s = &list[0];
    assert_eq!(s["user"], USER);
    assert_eq!(s["state"], "running");
    assert_eq!(s["name"], format!("{}-{USER}", pool.name));
    assert_eq!(s["calls_in_flight"], 0);
    assert!(s["container_id"].as_str().expect("id").len() >= 12);
    for key in [
        "created",
        "last_active",
        "idle_secs",
        "memory_bytes",
        "pids",
    ] {
        assert!(s[key].is_u64(), "{key}: {s}");
    }
    let (code, table, _) = pool.run(&["ls"]);
    assert_eq!(code, 0);
    assert!(
        table.lines().nth(1).expect("a row").starts_with(USER),
        "{table}"
    );

    // A second call adopts the running sandbox instead of making another.
    let (code, _, stderr) = pool.run(&["call", USER, "shell", r#"{"command":"true"}"#]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(pool.ls()[0]["container_id"], s["container_id"]);

    let (code, stdout, stderr) = pool.run(&["show", USER, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let shown: Value = serde_json::from_str(&stdout).expect("show --json is JSON");
    let limits = &shown["limits"];
    assert_eq!(limits["memory_bytes"], 256 * 1024 * 1024);
    assert_eq!(limits["memory_swap_bytes"], 256 * 1024 * 1024);
    assert_eq!(limits["pids"], 256);
    assert_eq!(limits["nofile"], 1024);
    assert_eq!(limits["cpus"], 1.0);
    assert_eq!(limits["network_mode"], "none");
    assert_eq!(limits["read_only_rootfs"], true);
    assert_eq!(limits["init"], true);
    assert!(limits["tmpfs"]["/tmp"].is_string());
    assert_eq!(shown["current"], true);
    assert_eq!(shown["labels"]["zcbot.test"], "1");
    let workspace = shown["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["target"] == "/workspace")
        .expect("the user root is mounted");
    assert_eq!(
        workspace["source"],
        pool.users_root().join(USER).display().to_string()
    );
    let processes = shown["processes"].as_array().expect("processes");
    assert!(
        processes.iter().any(|p| p["args"] == "sleep infinity"),
        "{processes:?}"
    );
    let (code, text, _) = pool.run(&["show", USER]);
    assert_eq!(code, 0);
    assert!(
        text.contains("processes:") && text.contains("read-only rootfs"),
        "{text}"
    );

    let (code, stdout, stderr) = pool.run(&["rm", USER]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("removed "), "{stdout}");
    assert!(pool.containers().is_empty());
    assert_eq!(pool.ls(), Vec::<Value>::new());
    let (code, stdout, _) = pool.run(&["rm", USER]);
    assert_eq!(code, 0);
    assert!(stdout.contains("has no sandbox"), "{stdout}");
    let (code, _, stderr) = pool.run(&["show", USER]);
    assert_one_line_failure(code, &stderr, 1, "has no sandbox");
}

#[test]
fn a_failing_tool_makes_call_exit_1_and_shows_the_code() {
    let pool = TestPool::new("call_exit_code");
    let (code, stdout, stderr) = pool.run(&["call", USER, "shell", r#"{"command":"exit 3"}"#]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout.trim_end(), "[exit 3]");
    assert!(stderr.contains("exit code: 3 "), "{stderr}");

    // --stream prints the output as it comes, then the result.
    let args = r#"{"command":"echo one; echo two >&2"}"#;
    let (code, stdout, stderr) = pool.run(&["call", "--stream", USER, "shell", args]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("one\n"), "{stdout}");
    assert!(
        stdout.ends_with("[stdout]\none\n[stderr]\ntwo\n[exit 0]\n"),
        "{stdout}"
    );
    assert!(stderr.starts_with("two\n"), "{stderr}");

    // --timeout becomes the tool's deadline.
    let args = r#"{"command":"sleep 30"}"#;
    let (code, stdout, _) = pool.run(&["call", "--timeout", "1", USER, "shell", args]);
    assert_eq!(code, 1);
    assert!(
        stdout.starts_with("[Error] command timed out after 1s"),
        "{stdout}"
    );
}

#[test]
fn bad_call_arguments_are_usage_errors() {
    let pool = TestPool::new("call_usage");
    for (args, needle) in [
        (&[USER, "shell", "{not json"][..], "not valid JSON"),
        (&[USER, "shell", "[1, 2]"], "JSON object"),
        (&["no/slash", "shell", "{}"], "invalid user id"),
        (&["-x", "shell", "{}"], "invalid user id"),
        (&[USER, "web_search", "{}"], "unknown tool"),
    ] {
        let mut all = vec!["call"];
        if args[0].starts_with('-') {
            all.push("--");
        }
        all.extend(args);
        let (code, _, stderr) = pool.run(&all);
        assert_one_line_failure(code, &stderr, 2, needle);
    }
    let (code, _, stderr) = pool.run(&["show", "a b"]);
    assert_one_line_failure(code, &stderr, 2, "invalid user id");
    let (code, _, stderr) = pool.run(&["rm", ""]);
    assert_one_line_failure(code, &stderr, 2, "invalid user id");
    assert!(pool.containers().is_empty(), "nothing was made");
}

#[test]
fn reap_removes_a_sandbox_idle_past_the_timeout() {
    let pool = TestPool::new("reap");
    let (code, _, stderr) = pool.run(&["call", USER, "shell", r#"{"command":"true"}"#]);
    assert_eq!(code, 0, "{stderr}");
    // Default idle timeout (5 minutes): nothing to reap.
    let (code, stdout, _) = pool.run(&["reap"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("nothing to reap"), "{stdout}");
    assert_eq!(pool.containers().len(), 1);

    let idle = pool.write_config("idle.toml", "reap", &image(), "idle_timeout = \"1s\"");
    std::thread::sleep(Duration::from_millis(2500));
    let (code, stdout, stderr) = output(pool.cmd_with(&idle, &["reap"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "removed {}-{USER} (user {USER}, idle for ",
            pool.name
        )),
        "{stdout}"
    );
    assert!(pool.containers().is_empty());
}

#[test]
fn gc_lists_a_stopped_sandbox_on_a_dry_run_and_removes_it_otherwise() {
    let pool = TestPool::new("gc");
    let (code, _, stderr) = pool.run(&["call", USER, "shell", r#"{"command":"true"}"#]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = pool.run(&["gc", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("nothing to collect"),
        "a running current one stays: {stdout}"
    );

    let name = format!("{}-{USER}", pool.name);
    runtime().block_on(async {
        docker()
            .await
            .stop_container(&name, Some(StopContainerOptionsBuilder::new().t(0).build()))
            .await
            .expect("stop the sandbox");
    });
    let (code, stdout, stderr) = pool.run(&["gc", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        format!("would remove {name} (user {USER}): not running (exited)\n")
    );
    assert_eq!(pool.containers().len(), 1, "a dry run removes nothing");

    let (code, stdout, stderr) = pool.run(&["gc"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        format!("removed {name} (user {USER}): not running (exited)\n")
    );
    assert!(pool.containers().is_empty());
}

#[test]
fn a_daemon_that_does_not_answer_is_one_line_and_exit_1() {
    // No daemon needed here: this is the answer when there is none.
    let config = tempfile::NamedTempFile::new().expect("config file");
    for args in [
        &["ls"][..],
        &["ls", "--json"],
        &["show", USER],
        &["call", USER, "shell", r#"{"command":"true"}"#],
        &["reap"],
        &["gc", "--dry-run"],
        &["rm", USER],
        &["image", "status"],
    ] {
        let mut cmd = Command::new(BIN);
        cmd.env("DOCKER_HOST", "unix:///nonexistent.sock")
            .arg("--config")
            .arg(config.path())
            .args(args);
        let (code, stdout, stderr) = output(cmd);
        assert_one_line_failure(
            code,
            &stderr,
            1,
            "the Docker daemon does not answer at unix:///nonexistent.sock; start it with `just docker-up` or set DOCKER_HOST",
        );
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
}

#[test]
fn a_missing_image_says_to_run_just_image() {
    let missing = format!("zcbot-sandbox:missing-{}", unique());
    let pool = TestPool::with_image("missing_image", &missing);
    let (code, stdout, stderr) = pool.run(&["call", USER, "shell", r#"{"command":"true"}"#]);
    assert_one_line_failure(
        code,
        &stderr,
        1,
        &format!("image {missing} is missing; build it with `just image`"),
    );
    assert!(stdout.is_empty());
    let (code, _, stderr) = pool.run(&["gc"]);
    assert_one_line_failure(code, &stderr, 1, "just image");
    assert!(pool.containers().is_empty());
}

#[test]
fn read_only_commands_guest_calls_and_rm_touch_nothing_but_what_they_name() {
    let pool = TestPool::new("hands_off");
    let other = pool.write_config("other.toml", "hands_off", &image(), "cpus = 0.5");
    for (user, config) in [("u1", &pool.config), ("u2", &pool.config), ("u3", &other)] {
        let (code, _, stderr) =
            output(pool.cmd_with(config, &["call", user, "shell", r#"{"command":"true"}"#]));
        assert_eq!(code, 0, "{stderr}");
    }
    // u2's sandbox stopped, u3's made with another configuration: both leftovers a service's
    // pool would remove when it starts.
    let stopped = format!("{}-u2", pool.name);
    runtime().block_on(async {
        docker()
            .await
            .stop_container(
                &stopped,
                Some(StopContainerOptionsBuilder::new().t(0).build()),
            )
            .await
            .expect("stop the sandbox");
    });
    let states = || {
        let mut s: Vec<(String, String)> = pool
            .containers()
            .iter()
            .map(|c| {
                let name = c.names.as_ref().and_then(|n| n.first()).cloned();
                (
                    name.unwrap_or_default(),
                    c.state.map(|s| s.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        s.sort();
        s
    };
    let before = states();
    assert_eq!(before.len(), 3, "{before:?}");
    for args in [
        vec!["ls"],
        vec!["ls", "--json"],
        vec!["show", "u1"],
        vec!["show", "u2", "--json"],
        vec!["image", "status"],
    ] {
        let (code, _, stderr) = pool.run(&args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert_eq!(states(), before, "{args:?} changed nothing");
    }
    // A call uses u3's running sandbox as it is, made with another configuration or not.
    let (code, stdout, stderr) =
        pool.run(&["call", "u3", "shell", r#"{"command":"echo as it is"}"#]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "[stdout]\nas it is\n[exit 0]\n");
    assert_eq!(states(), before, "a guest call changed nothing");
    let (code, stdout, stderr) = pool.run(&["rm", "u1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("removed "), "{stdout}");
    let after: Vec<_> = before
        .iter()
        .filter(|(name, _)| !name.ends_with("-u1"))
        .cloned()
        .collect();
    assert_eq!(
        states(),
        after,
        "rm u1 removed u1's sandbox and nothing else"
    );
}

#[test]
fn the_sandbox_uid_is_chosen_at_image_build_and_owns_user_roots_made_mode_0700() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // An image of its own, built for uid 61002, removed at the end (after the pool's
    // containers: declared first, dropped last).
    let repo = format!("zpi-uid-{}", unique());
    struct RemoveImages(String);
    impl Drop for RemoveImages {
        fn drop(&mut self) {
            use sandbox_pool::bollard::query_parameters::{
                ListImagesOptionsBuilder, RemoveImageOptionsBuilder,
            };
            let filters = std::collections::HashMap::from([("reference", vec![self.0.as_str()])]);
            runtime().block_on(async {
                let docker = docker().await;
                let list = ListImagesOptionsBuilder::new().filters(&filters).build();
                // By tag: another repository's tags of the same image are not ours.
                for image in docker.list_images(Some(list)).await.unwrap_or_default() {
                    for tag in image.repo_tags.iter().filter(|t| t.starts_with(&self.0)) {
                        let untag = RemoveImageOptionsBuilder::new().build();
                        if let Err(e) = docker.remove_image(tag, Some(untag), None).await {
                            eprintln!("warning: removing test image {tag}: {e}");
                        }
                    }
                }
            });
        }
    }
    let _images = RemoveImages(repo.clone());
    let pool = TestPool::new("uid_at_build");
    let config = pool.dir.path().join("uid.toml");
    std::fs::write(
        &config,
        format!(
            "[image]\nrepo = \"{repo}\"\nuid = 61002\n\n[pool]\nimage = \"{repo}:latest\"\n\
             memory = \"256MiB\"\n[pool.labels]\n\"zcbot.test\" = \"1\"\n"
        ),
    )
    .expect("write the configuration");
    let (code, stdout, stderr) = output(pool.cmd_with(&config, &["image", "build"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with(&format!("{repo}:")), "{stdout}");

    let (code, stdout, stderr) = output(pool.cmd_with(
        &config,
        &["call", USER, "shell", r#"{"command":"id -u; touch mine"}"#],
    ));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "[stdout]\n61002\n[exit 0]\n");
    let root = pool.users_root().join(USER);
    let meta = std::fs::metadata(&root).expect("the user root");
    assert_eq!(meta.uid(), 61002);
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert_eq!(
        std::fs::metadata(root.join("mine")).expect("file").uid(),
        61002
    );
}

#[test]
fn show_reads_a_channel_from_the_process_list() {
    let pool = TestPool::new("show_channel");
    let (code, _, stderr) = pool.run(&["call", USER, "shell", r#"{"command":"true"}"#]);
    assert_eq!(code, 0, "{stderr}");
    let (code, text, _) = pool.run(&["show", USER]);
    assert_eq!(code, 0);
    assert!(
        text.contains("none open"),
        "the call's own channel went with it: {text}"
    );
    assert!(text.contains("channel (tools.transport;"), "{text}");
    // A service's channel, opened from this process: the 3rd of its sandbox, 4 calls in.
    let container = format!("{}-{USER}", pool.name);
    let rt = runtime();
    let channel = rt.block_on(async {
        let exec = sandbox_exec::ExecClient::new(docker().await);
        let channel = sandbox_exec::Channel::open(&exec, &container, Some("zcbot"), "svc-2")
            .await
            .expect("open a channel");
        for _ in 0..4 {
            let out = channel
                .run(sandbox_exec::ExecRequest::new(["true"]))
                .await
                .expect("run");
            assert_eq!(out.exit_code(), 0);
        }
        channel
    });
    let (code, stdout, stderr) = pool.run(&["show", USER, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let shown: Value = serde_json::from_str(&stdout).expect("JSON");
    let channels = shown["channels"].as_array().expect("channels");
    assert_eq!(channels.len(), 1, "{shown}");
    assert_eq!(channels[0]["id"], "svc-2");
    assert_eq!(channels[0]["reopened"], 2);
    assert_eq!(channels[0]["calls_served"], 4);
    assert_eq!(shown["transport"], "channel");
    let (_, text, _) = pool.run(&["show", USER]);
    assert!(
        text.contains("svc-2 (pid ") && text.contains("4 calls served, reopened 2 times"),
        "{text}"
    );
    drop(channel);
}

#[test]
fn engines_reports_each_configured_engine_and_fails_when_one_does_not_answer() {
    let pool = TestPool::new("engines");
    let config = pool.dir.path().join("engines.toml");
    let missing = pool.dir.path().join("no-daemon.sock");
    std::fs::write(
        &config,
        format!(
            "[[engines]]\nname = \"here\"\nhost = \"unix:///var/run/docker.sock\"\n\n\
             [[engines]]\nname = \"gone\"\nhost = \"unix://{}\"\nweight = 2\nmax_sandboxes = 10\n",
            missing.display()
        ),
    )
    .expect("write");
    let (code, stdout, stderr) = output(pool.cmd_with(&config, &["engines", "--json"]));
    assert_eq!(code, 1, "one engine is down: {stderr}");
    let rows: Vec<Value> = serde_json::from_str(&stdout).expect("JSON only");
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["name"].as_str(), rows[0]["healthy"].as_bool()),
        (Some("here"), Some(true))
    );
    assert_eq!(rows[0]["sandboxes"], 0);
    assert_eq!(
        (rows[1]["name"].as_str(), rows[1]["healthy"].as_bool()),
        (Some("gone"), Some(false))
    );
    assert_eq!(
        (
            rows[1]["weight"].as_f64(),
            rows[1]["max_sandboxes"].as_u64()
        ),
        (Some(2.0), Some(10))
    );
    let error = rows[1]["error"].as_str().expect("why");
    assert!(error.starts_with("engine gone at unix://"), "{error}");
    let (code, stdout, _) = output(pool.cmd_with(&config, &["engines"]));
    assert_eq!(code, 1);
    assert!(
        stdout.starts_with("ENGINE ") && stdout.contains("gone"),
        "{stdout}"
    );
    // Without engines in the configuration: the local one.
    let (code, stdout, stderr) = pool.run(&["engines", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"name\": \"local\""), "{stdout}");
}

#[test]
fn commands_work_per_engine_and_a_call_lands_on_an_engine_that_answers() {
    let pool = TestPool::new("per_engine");
    let config = pool.write_config(
        "two.toml",
        "per_engine",
        &image(),
        &format!(
            "\n[[engines]]\nname = \"main\"\nhost = \"unix:///var/run/docker.sock\"\n\n\
             [[engines]]\nname = \"gone\"\nhost = \"unix://{}\"\n",
            pool.dir.path().join("no-daemon.sock").display()
        ),
    );
    // One engine of two is down: the call is placed on the other whatever the user's ranking.
    let (code, stdout, stderr) = output(pool.cmd_with(
        &config,
        &["call", USER, "shell", r#"{"command": "echo placed"}"#],
    ));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("placed"), "{stdout}");
    let (code, stdout, stderr) =
        output(pool.cmd_with(&config, &["--engine", "main", "ls", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<Value> = serde_json::from_str(&stdout).expect("JSON only");
    assert_eq!(rows.len(), 1, "{stdout}");
    assert_eq!(
        (rows[0]["engine"].as_str(), rows[0]["user"].as_str()),
        (Some("main"), Some(USER))
    );
    // Every engine: the table has an engine column, and the one down is said and fails `ls`.
    let (code, stdout, stderr) = output(pool.cmd_with(&config, &["ls"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.starts_with("ENGINE ") && stdout.contains("main"),
        "{stdout}"
    );
    assert!(stderr.contains("engine gone"), "{stderr}");
    // An engine the configuration does not name is a usage error.
    let (code, _, stderr) = output(pool.cmd_with(&config, &["--engine", "nope", "ls"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no engine nope"), "{stderr}");
    let (code, _, stderr) = output(pool.cmd_with(&config, &["--engine", "main", "rm", USER]));
    assert_eq!(code, 0, "{stderr}");
    let (_, stdout, _) = output(pool.cmd_with(&config, &["--engine", "main", "ls", "--json"]));
    assert_eq!(stdout.trim(), "[]");
}

#[test]
fn show_says_which_quota_is_in_force_and_its_usage_matches_du() {
    let pool = TestPool::new("disk");
    let config = pool.write_config(
        "disk.toml",
        "disk",
        &image(),
        "\n[tools.quotas]\ndisk_bytes_per_user = \"16MiB\"\n",
    );
    let (code, _, stderr) = output(pool.cmd_with(
        &config,
        &[
            "call",
            USER,
            "shell",
            r#"{"command": "dd if=/dev/zero of=f bs=1M count=3 2>/dev/null"}"#,
        ],
    ));
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = output(pool.cmd_with(&config, &["show", USER, "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let shown: Value = serde_json::from_str(&stdout).expect("JSON");
    let disk = &shown["disk"];
    assert_eq!(disk["enforce"], "filesystem", "{disk}");
    assert_eq!(disk["quota_bytes"], 16 << 20);
    let root = pool.users_root().join(USER);
    let du = e2e_tests::du_bytes(&root);
    let used = disk["used_bytes"].as_u64().expect("used");
    assert!(used.abs_diff(du) < 1 << 20, "show {used}, du {du}");
    let (_, table, _) = output(pool.cmd_with(&config, &["show", USER]));
    assert!(table.contains("filesystem of the quota's size"), "{table}");
    // Removed: the user's disk is unmounted, its image (and the file) stays.
    let (code, _, stderr) = output(pool.cmd_with(&config, &["rm", USER]));
    assert_eq!(code, 0, "{stderr}");
    assert!(!sandbox_pool::disk::is_mounted(&root));
    assert!(sandbox_pool::disk::image_of(&root).exists());
    // Without a quota: none; with `disk_enforce = "gate"`: the gate alone.
    let gate = pool.write_config(
        "gate.toml",
        "disk",
        &image(),
        "disk_enforce = \"gate\"\n\n[tools.quotas]\ndisk_bytes_per_user = \"16MiB\"\n",
    );
    let (_, _, _) =
        output(pool.cmd_with(&gate, &["call", "u2", "shell", r#"{"command": "true"}"#]));
    let (_, stdout, stderr) = output(pool.cmd_with(&gate, &["show", "u2", "--json"]));
    let shown: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stderr}"));
    assert_eq!(shown["disk"]["enforce"], "gate", "{stdout}");
}

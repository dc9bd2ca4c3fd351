//! A second Docker daemon that a test starts, crashes, restarts and stops itself, with its own
//! socket, data root, exec root (so its own containerd), pid file and cgroup parent (and
//! `--bridge=none --iptables=false`, as every daemon here). Only this process's own dockerd is
//! ever signalled, by its pid.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};

/// A private dockerd.
#[derive(Debug)]
pub struct SecondDaemon {
    data: PathBuf,
    run: PathBuf,
    /// More `dockerd` arguments (another `--host`, TLS).
    extra: Vec<String>,
    child: Option<Child>,
}

impl SecondDaemon {
    /// Starts one and waits until it answers.
    pub async fn start() -> Self {
        Self::start_with(Vec::new()).await
    }

    /// As [`SecondDaemon::start`], with more `dockerd` arguments.
    pub async fn start_with(extra: Vec<String>) -> Self {
        let id = crate::unique();
        // Short exec-root: containerd's sockets live under it and unix paths are limited.
        let mut d = Self {
            data: PathBuf::from(format!("/var/lib/zt-dd-{id}")),
            run: PathBuf::from(format!("/run/zt-dd-{id}")),
            extra,
            child: None,
        };
        std::fs::create_dir_all(&d.data).expect("data dir");
        std::fs::create_dir_all(&d.run).expect("run dir");
        d.spawn();
        d.wait_ready().await;
        d
    }

    /// `zt-dd-<id>`: its folders' and its cgroup parent's name.
    fn name(&self) -> String {
        self.run
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn socket(&self) -> PathBuf {
        self.run.join("docker.sock")
    }

    /// `daemons` as the engines `e0`, `e1`, ... of a configuration.
    pub fn engines(daemons: &[SecondDaemon]) -> Vec<sandbox_pool::EngineConfig> {
        daemons
            .iter()
            .enumerate()
            .map(|(i, d)| sandbox_pool::EngineConfig::new(format!("e{i}"), d.host()))
            .collect()
    }

    /// Its address, as an engine of the configuration names it (`unix://...`).
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("dockerd.log"))
            .expect("log file");
        let child = Command::new("dockerd")
            .arg("--bridge=none")
            .arg("--iptables=false")
            .arg("--host")
            .arg(format!("unix://{}", self.socket().display()))
            .arg("--data-root")
            .arg(self.data.join("data"))
            .arg("--exec-root")
            .arg(self.run.join("exec"))
            .arg("--pidfile")
            .arg(self.run.join("docker.pid"))
            // Its containers' cgroups apart from the main daemon's (`/docker/<id>`).
            .arg("--cgroup-parent")
            .arg(format!("/{}", self.name()))
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start a second dockerd (the tests run as root with docker.io installed)");
        self.child = Some(child);
    }

    async fn wait_ready(&self) {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(docker) = self.try_client().await
                && docker.ping().await.is_ok()
            {
                return;
            }
            if Instant::now() >= until {
                let log =
                    std::fs::read_to_string(self.data.join("dockerd.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(25).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "the second dockerd did not answer in 60 s; its log ends:\n{}",
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn try_client(&self) -> Option<Docker> {
        self.client_within(30).await
    }

    async fn client_within(&self, secs: u64) -> Option<Docker> {
        let docker = Docker::connect_with_unix(
            &self.socket().to_string_lossy(),
            secs,
            bollard::API_DEFAULT_VERSION,
        )
        .ok()?;
        docker.negotiate_version().await.ok()
    }

    /// A client of this daemon.
    pub async fn client(&self) -> Docker {
        self.try_client()
            .await
            .expect("a client of the second daemon")
    }

    /// Copies `image` from the main daemon into this one (save, then load).
    pub async fn load_image(&self, image: &str) {
        let main = crate::docker().await;
        let tar = main
            .export_image(image)
            .map_err(|e| std::io::Error::other(e.to_string()));
        // Loading takes long on a busy machine: more than a request's usual 30 s.
        let mine = self
            .client_within(300)
            .await
            .expect("a client of the second daemon");
        let mut load = mine.import_image_stream(
            bollard::query_parameters::ImportImageOptionsBuilder::new()
                .quiet(true)
                .build(),
            tar,
            None,
        );
        while let Some(item) = load.next().await {
            item.expect("load the image into the second daemon");
        }
        mine.inspect_image(image).await.expect("the image is there");
    }

    /// Kills the daemon with SIGKILL (a crash) and reaps it. Its containers' processes keep
    /// running under their shims until it comes back.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A crashed daemon leaves its pid file, and refuses to start again while it is there;
        // its containerd died with it (parent-death signal) but left a pid file too, which the
        // next daemon would trust if the pid were reused by then.
        let _ = std::fs::remove_file(self.run.join("docker.pid"));
        let _ = std::fs::remove_file(self.run.join("exec/containerd/containerd.pid"));
    }

    /// Starts the daemon again after a crash and waits until it answers.
    pub async fn restart(&mut self) {
        self.spawn();
        self.wait_ready().await;
    }

    /// Freezes the daemon (SIGSTOP): it keeps every connection and answers nothing, like a
    /// daemon that hangs. Its containers run on.
    pub fn freeze(&self) {
        self.signal_daemon(rustix::process::Signal::STOP);
    }

    /// Lets a frozen daemon run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal_daemon(rustix::process::Signal::CONT);
    }

    fn signal_daemon(&self, sig: rustix::process::Signal) {
        if let Some(child) = &self.child
            && let Ok(pid) = i32::try_from(child.id())
        {
            signal(pid, sig);
        }
    }

    fn stop(&mut self) {
        // A frozen daemon could not act on SIGTERM.
        self.thaw();
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id())
                && let Some(pid) = rustix::process::Pid::from_raw(pid)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let until = Instant::now() + Duration::from_secs(30);
            while Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SecondDaemon {
    fn drop(&mut self) {
        self.stop();
        // Container shims of this daemon that outlived it (after a crash its containerd may be
        // gone while they run on): end their containers, then them. Only processes naming our
        // own unique folders are touched.
        let ours = self.run.to_string_lossy().into_owned();
        for shim in pids_with_arg_containing(&ours) {
            for child in children_of(shim) {
                signal(child, rustix::process::Signal::KILL);
            }
            signal(shim, rustix::process::Signal::KILL);
        }
        // dockerd bind-mounts its data root onto itself, and leaves netns mounts in its exec
        // root; unmount everything under our folders, deepest first.
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|m| m.starts_with(&ours) || m.starts_with(&*self.data.to_string_lossy()))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.run);
        let _ = std::fs::remove_dir_all(&self.data);
        // Its cgroup parent, in every hierarchy (empty once its containers are gone).
        let name = self.name();
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(hierarchy.path().join(&name));
        }
        let _ = std::fs::remove_dir(PathBuf::from("/sys/fs/cgroup").join(&name));
    }
}

fn signal(pid: i32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn pids_with_arg_containing(needle: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

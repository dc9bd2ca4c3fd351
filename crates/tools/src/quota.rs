//! The disk-quota gate in front of `write` and `edit`.
//!
//! The gate runs on the host before any container call: a refused change touches nothing. An
//! allowed one carries the user's headroom, which the runner enforces exactly
//! (`ToolInput::max_growth_bytes`) once it knows how much the file really grows.
//!
//! The seed failed open, silently, when usage could not be measured (DESIGN.md, flaw 7). Here
//! the policy is explicit ([`FailurePolicy`]) and every failure is logged.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytesize::ByteSize;
use rustix::fs::{self, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

/// How long a measured usage is trusted: 10 s.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(10);

/// The `quotas` section of the configuration.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Bytes a user's root may hold, as a size such as `"2GiB"` or `"500 MB"` (or a plain
    /// number of bytes). `None`, or 0 as in the seed, means no limit.
    pub disk_bytes_per_user: Option<ByteSize>,
    /// What a write does when usage cannot be measured (default [`FailurePolicy::Closed`]).
    pub on_check_failure: FailurePolicy,
    /// How long a measured usage is reused, as `"10s"` (default [`DEFAULT_CACHE_TTL`]).
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            disk_bytes_per_user: None,
            on_check_failure: FailurePolicy::default(),
            cache_ttl: DEFAULT_CACHE_TTL,
        }
    }
}

impl QuotaConfig {
    /// The limit in bytes, if there is one.
    fn limit(&self) -> Option<u64> {
        self.disk_bytes_per_user
            .map(|size| size.as_u64())
            .filter(|&bytes| bytes > 0)
    }
}

/// What a write does when its quota check fails.
///
/// The default is [`FailurePolicy::Closed`]: a quota that silently stops working is the flaw
/// this gate fixes, and a broken usage store should be visible (to users as refused writes, to
/// operators in the log) rather than let disks fill up unnoticed. Choose `Open` where losing
/// writes is worse than overrunning the quota for a while.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Allow the write as if there were no limit.
    Open,
    /// Refuse the write.
    #[default]
    Closed,
}

/// Why usage could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// Walking the user's root failed.
    #[error("could not measure disk usage")]
    Measure(#[source] io::Error),
    /// The blocking task measuring it panicked or was cancelled.
    #[error("disk usage task failed")]
    Task(#[source] tokio::task::JoinError),
    /// A [`UsageStore`] of the service's own failed.
    #[error("usage store failed")]
    Store(#[source] Box<dyn StdError + Send + Sync>),
}

/// Where usage comes from. The embedded default is [`DirUsage`]; a service can plug its own
/// (the seed read a table the service kept up to date).
#[async_trait]
pub trait UsageStore: Send + Sync + std::fmt::Debug {
    /// Bytes `user` holds under `root` (the user's root directory on the host).
    async fn usage(&self, user: &str, root: &Path) -> Result<u64, QuotaError>;

    /// `user` changed their files: forget what is cached about them.
    fn record_write(&self, _user: &str) {}
}

/// The gate's answer for one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaDecision {
    /// No limit is configured.
    Unlimited,
    /// Go ahead. `remaining` is the headroom before this change (limit − usage), which the
    /// runner gets as its exact `max_growth_bytes`. `u64::MAX` when the check failed open.
    Allowed {
        /// Bytes the user's root may still grow by.
        remaining: u64,
    },
    /// Refuse the change without touching anything; answer `message` with exit code 2.
    Refused {
        /// The `[Error] ...` text for the model.
        message: String,
    },
}

/// Checks writes against the configured limit.
#[derive(Debug, Clone)]
pub struct QuotaGate {
    config: QuotaConfig,
    store: Arc<dyn UsageStore>,
}

impl QuotaGate {
    /// A gate measuring usage with [`DirUsage`], cached for `config.cache_ttl`.
    pub fn new(config: QuotaConfig) -> Self {
        let store = Arc::new(DirUsage::new(config.cache_ttl));
        Self::with_store(config, store)
    }

    /// A gate reading usage from `store`.
    pub fn with_store(config: QuotaConfig, store: Arc<dyn UsageStore>) -> Self {
        Self { config, store }
    }

    /// Whether `user` (whose root is `root`) may make a change that needs `incoming` more
    /// bytes. Refused when usage + `incoming` exceeds the limit; exactly at the limit is
    /// allowed. Callers that cannot know the growth in advance pass 0 and leave the exact
    /// check to the runner through [`QuotaDecision::Allowed::remaining`].
    pub async fn check(&self, user: &str, root: &Path, incoming: u64) -> QuotaDecision {
        let Some(limit) = self.config.limit() else {
            return QuotaDecision::Unlimited;
        };
        match self.store.usage(user, root).await {
            Ok(usage) if usage.saturating_add(incoming) > limit => QuotaDecision::Refused {
                message: over_quota(usage, limit, incoming),
            },
            Ok(usage) => QuotaDecision::Allowed {
                remaining: limit.saturating_sub(usage),
            },
            Err(err) => self.check_failed(user, root, &err),
        }
    }

    /// `user` changed their files (call after every `write`/`edit` that reached the
    /// container, whatever its result), so the next check measures again.
    pub fn record_write(&self, user: &str) {
        self.store.record_write(user);
    }

    fn check_failed(&self, user: &str, root: &Path, err: &QuotaError) -> QuotaDecision {
        let err = crate::format::error_chain(err);
        let policy = self.config.on_check_failure;
        tracing::warn!(
            user,
            root = %root.display(),
            error = %err,
            ?policy,
            "disk quota check failed"
        );
        match policy {
            FailurePolicy::Open => QuotaDecision::Allowed {
                remaining: u64::MAX,
            },
            FailurePolicy::Closed => QuotaDecision::Refused {
                message: format!("[Error] disk quota check failed: {err}; write refused"),
            },
        }
    }
}

fn over_quota(usage: u64, limit: u64, incoming: u64) -> String {
    format!(
        "[Error] disk quota exceeded: {} of {} used, this change needs {} more",
        size(usage),
        size(limit),
        size(incoming)
    )
}

/// `1.5 KiB (1536 bytes)`: readable, and exact.
fn size(bytes: u64) -> String {
    format!("{} ({bytes} bytes)", ByteSize(bytes))
}

/// The embedded [`UsageStore`]: the used bytes of the user root's own filesystem when it is
/// one ([`sandbox_pool::disk`]); otherwise the sum of the apparent sizes of the regular files
/// under the user's root, reused for a while.
///
/// The sandbox user owns everything under the root and may change it while the host walks it,
/// so the walk goes by directory handles ([`apparent_size`]): it never follows a symlink, a
/// directory swapped for one mid-walk leads nowhere, and it stays on the root's filesystem. It
/// runs on a blocking thread and stops as soon as the caller stops waiting (the call's deadline
/// or cancellation dropped the check). A file that vanishes during the walk counts as nothing;
/// any other error fails the check rather than undercount (a directory the host may not read
/// would otherwise hide what is in it).
#[derive(Debug)]
pub struct DirUsage {
    ttl: Duration,
    cache: Mutex<HashMap<String, Measured>>,
}

#[derive(Debug, Clone)]
struct Measured {
    root: PathBuf,
    bytes: u64,
    at: Instant,
}

impl DirUsage {
    /// Measurements are reused for `ttl` (zero: always measure).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, user: &str, root: &Path) -> Option<u64> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(user)
            .filter(|m| m.root == root && m.at.elapsed() < self.ttl)
            .map(|m| m.bytes)
    }

    fn remember(&self, user: &str, root: &Path, bytes: u64, at: Instant) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // Expired entries go on every insert, so users who left cost nothing for long.
        cache.retain(|_, m| m.at.elapsed() < self.ttl);
        let root = root.to_owned();
        cache.insert(user.to_owned(), Measured { root, bytes, at });
    }
}

/// Sets its flag when dropped: the walk on the blocking thread sees it and ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[async_trait]
impl UsageStore for DirUsage {
    async fn usage(&self, user: &str, root: &Path) -> Result<u64, QuotaError> {
        // A user root that is a filesystem of its own: its usage in one statfs, no walk.
        if let Some((used, _)) = sandbox_pool::disk::usage(root) {
            return Ok(used);
        }
        if let Some(bytes) = self.cached(user, root) {
            return Ok(bytes);
        }
        // Timed from the start: writes made during the walk may be missed, so the entry must
        // not outlive `ttl` counted from before them.
        let started = Instant::now();
        let owned = root.to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
        let bytes = tokio::task::spawn_blocking(move || apparent_size(&owned, &stop))
            .await
            .map_err(QuotaError::Task)?
            .map_err(QuotaError::Measure)?;
        self.remember(user, root, bytes, started);
        Ok(bytes)
    }

    fn record_write(&self, user: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.remove(user);
    }
}

/// Deepest directory the walk enters; a deeper tree fails the check (one handle is open per
/// level).
pub const MAX_WALK_DEPTH: usize = 256;
/// Entries between two looks at the stop flag.
const STOP_CHECK_EVERY: u32 = 256;

/// Sum of the sizes of the regular files under `root`; 0 when `root` does not exist yet.
///
/// Every directory is opened relative to its parent's handle, `O_NOFOLLOW`, and checked to be
/// on the root's filesystem; files are measured relative to the same handle without following
/// links. So whatever the sandbox does to the tree meanwhile, the walk reads only what is below
/// the root. `stop` ends it with [`io::ErrorKind::Interrupted`].
pub fn apparent_size(root: &Path, stop: &AtomicBool) -> io::Result<u64> {
    walk(root, stop, &mut |_| {})
}

/// [`apparent_size`], calling `before_open` with each directory's path under the root just
/// before opening it (tests change the tree there).
fn walk(root: &Path, stop: &AtomicBool, before_open: &mut dyn FnMut(&Path)) -> io::Result<u64> {
    let top = match fs::open(root, dir_flags(), Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let device = fs::fstat(&top)?.st_dev;
    let mut stack = vec![(fs::Dir::new(top)?, PathBuf::new())];
    let mut total = 0u64;
    let mut seen = 0u32;
    while let Some((dir, at)) = stack.last_mut() {
        let Some(entry) = dir.read() else {
            stack.pop();
            continue;
        };
        seen = seen.wrapping_add(1);
        if seen.is_multiple_of(STOP_CHECK_EVERY) && stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "stopped"));
        }
        let entry = entry?;
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        let parent = dir.fd()?;
        let kind = match entry.file_type() {
            FileType::Unknown => match fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileType::from_raw_mode(st.st_mode),
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            },
            kind => kind,
        };
        match kind {
            FileType::RegularFile => match fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                // Swapped for something else since it was listed: not a file of the root now.
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                    total = total.saturating_add(u64::try_from(st.st_size).unwrap_or(0));
                }
                Ok(_) | Err(Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            },
            FileType::Directory => {
                let path = at.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
                before_open(&path);
                let fd = match fs::openat(parent, name, dir_flags(), Mode::empty()) {
                    Ok(fd) => fd,
                    // Gone, or swapped for a symlink or a file: nothing of the root to count.
                    Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => continue,
                    Err(e) => return Err(e.into()),
                };
                if fs::fstat(&fd)?.st_dev != device {
                    continue; // another filesystem mounted in the root
                }
                if stack.len() > MAX_WALK_DEPTH {
                    return Err(io::Error::other(format!(
                        "the tree is deeper than {MAX_WALK_DEPTH} directories"
                    )));
                }
                stack.push((fs::Dir::new(fd)?, path));
            }
            _ => {} // symlinks, sockets, FIFOs, devices: no data of their own
        }
    }
    Ok(total)
}

/// A directory, opened without following a link in the last component.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::atomic::AtomicU32;

    use super::*;

    fn config(limit: Option<u64>, policy: FailurePolicy) -> QuotaConfig {
        QuotaConfig {
            disk_bytes_per_user: limit.map(ByteSize),
            on_check_failure: policy,
            cache_ttl: Duration::from_secs(3600),
        }
    }

    /// A store that reports a fixed usage, or fails; counts its calls.
    #[derive(Debug, Default)]
    struct FakeStore {
        usage: Option<u64>,
        calls: AtomicU32,
    }

    #[async_trait]
    impl UsageStore for FakeStore {
        async fn usage(&self, _: &str, _: &Path) -> Result<u64, QuotaError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.usage
                .ok_or_else(|| QuotaError::Store(io::Error::other("connection refused").into()))
        }
    }

    fn gate(limit: Option<u64>, usage: Option<u64>, policy: FailurePolicy) -> QuotaGate {
        let store = FakeStore {
            usage,
            ..FakeStore::default()
        };
        QuotaGate::with_store(config(limit, policy), Arc::new(store))
    }

    async fn check(gate: &QuotaGate, incoming: u64) -> QuotaDecision {
        gate.check("u1", Path::new("/nonexistent"), incoming).await
    }

    #[test]
    fn config_parses_sizes_and_durations() {
        let c: QuotaConfig =
            serde_json::from_str(r#"{"disk_bytes_per_user": "2GiB"}"#).expect("2GiB");
        assert_eq!(c.disk_bytes_per_user, Some(ByteSize::gib(2)));
        assert_eq!(c.on_check_failure, FailurePolicy::Closed);
        assert_eq!(c.cache_ttl, DEFAULT_CACHE_TTL);
        let c: QuotaConfig = serde_json::from_str(
            r#"{"disk_bytes_per_user": "500 MB", "on_check_failure": "open", "cache_ttl": "1m 30s"}"#,
        )
        .expect("500 MB");
        assert_eq!(c.disk_bytes_per_user, Some(ByteSize::mb(500)));
        assert_eq!(c.on_check_failure, FailurePolicy::Open);
        assert_eq!(c.cache_ttl, Duration::from_secs(90));
        let c: QuotaConfig =
            serde_json::from_str(r#"{"disk_bytes_per_user": 1024}"#).expect("plain bytes");
        assert_eq!(c.limit(), Some(1024));
        let c: QuotaConfig = serde_json::from_str("{}").expect("empty");
        assert_eq!(c, QuotaConfig::default());
        assert!(
            serde_json::from_str::<QuotaConfig>(r#"{"disk_bytes": "1GiB"}"#).is_err(),
            "unknown fields are refused"
        );
        assert!(serde_json::from_str::<QuotaConfig>(r#"{"disk_bytes_per_user": "lots"}"#).is_err());
    }

    #[tokio::test]
    async fn no_limit_means_unlimited_without_asking_the_store() {
        for limit in [None, Some(0)] {
            let g = gate(limit, None, FailurePolicy::Closed);
            assert_eq!(check(&g, 1 << 40).await, QuotaDecision::Unlimited);
        }
    }

    #[tokio::test]
    async fn under_and_exactly_at_the_limit_are_allowed_with_the_headroom() {
        let g = gate(Some(1000), Some(600), FailurePolicy::Closed);
        assert_eq!(
            check(&g, 0).await,
            QuotaDecision::Allowed { remaining: 400 }
        );
        assert_eq!(
            check(&g, 400).await,
            QuotaDecision::Allowed { remaining: 400 }
        );
        let full = gate(Some(1000), Some(1000), FailurePolicy::Closed);
        assert_eq!(
            check(&full, 0).await,
            QuotaDecision::Allowed { remaining: 0 }
        );
    }

    #[tokio::test]
    async fn over_the_limit_is_refused() {
        let g = gate(Some(2 << 30), Some((2 << 30) - 100), FailurePolicy::Closed);
        let QuotaDecision::Refused { message } = check(&g, 1536).await else {
            panic!("not refused");
        };
        insta::assert_snapshot!(message, @"[Error] disk quota exceeded: 2.0 GiB (2147483548 bytes) of 2.0 GiB (2147483648 bytes) used, this change needs 1.5 KiB (1536 bytes) more");
        let over = gate(Some(1000), Some(1001), FailurePolicy::Open);
        assert!(matches!(
            check(&over, 0).await,
            QuotaDecision::Refused { .. }
        ));
    }

    #[tokio::test]
    async fn a_failing_store_fails_closed_by_default() {
        let g = gate(Some(1000), None, FailurePolicy::Closed);
        let QuotaDecision::Refused { message } = check(&g, 1).await else {
            panic!("not refused");
        };
        insta::assert_snapshot!(message, @"[Error] disk quota check failed: usage store failed: connection refused; write refused");
    }

    #[tokio::test]
    async fn a_failing_store_can_fail_open() {
        let g = gate(Some(1000), None, FailurePolicy::Open);
        assert_eq!(
            check(&g, 1 << 40).await,
            QuotaDecision::Allowed {
                remaining: u64::MAX
            }
        );
    }

    #[tokio::test]
    async fn every_failure_is_logged() {
        let warnings = Arc::new(AtomicU32::new(0));
        let subscriber = WarnCounter(warnings.clone());
        let _guard = tracing::subscriber::set_default(subscriber);
        for policy in [FailurePolicy::Open, FailurePolicy::Closed] {
            let g = gate(Some(1000), None, policy);
            check(&g, 1).await;
            check(&g, 1).await;
        }
        assert_eq!(warnings.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn dir_usage_sums_regular_files_and_skips_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("sub/深")).expect("mkdir");
        fs::write(root.join("a"), [0u8; 100]).expect("write");
        fs::write(root.join("sub/深/b"), [0u8; 23]).expect("write");
        std::os::unix::fs::symlink("/", root.join("root-link")).expect("symlink");
        std::os::unix::fs::symlink(root.join("a"), root.join("a-link")).expect("symlink");
        let store = DirUsage::new(Duration::ZERO);
        assert_eq!(store.usage("u1", root).await.expect("usage"), 123);
        let missing = root.join("not yet created");
        assert_eq!(store.usage("u2", &missing).await.expect("usage"), 0);
    }

    #[tokio::test]
    async fn dir_usage_is_cached_until_a_write_is_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::write(root.join("a"), [0u8; 10]).expect("write");
        let gate = QuotaGate::new(config(Some(100), FailurePolicy::Closed));
        let remaining = |d| match d {
            QuotaDecision::Allowed { remaining } => remaining,
            other => panic!("{other:?}"),
        };
        assert_eq!(remaining(gate.check("u1", root, 0).await), 90);
        fs::write(root.join("b"), [0u8; 50]).expect("write");
        assert_eq!(
            remaining(gate.check("u1", root, 0).await),
            90,
            "cached within the ttl"
        );
        gate.record_write("u1");
        assert_eq!(remaining(gate.check("u1", root, 0).await), 40);
        let other = dir.path().join("b");
        fs::remove_file(&other).expect("rm");
        gate.record_write("someone else");
        assert_eq!(
            remaining(gate.check("u1", root, 0).await),
            40,
            "another user's write leaves u1's cache alone"
        );
    }

    #[tokio::test]
    async fn an_unreadable_directory_fails_the_check() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let hidden = dir.path().join("hidden");
        fs::create_dir(&hidden).expect("mkdir");
        fs::write(hidden.join("big"), [0u8; 10]).expect("write");
        fs::set_permissions(&hidden, fs::Permissions::from_mode(0o000)).expect("chmod");
        if fs::read_dir(&hidden).is_ok() {
            // Root reads anything: nothing to show here.
            return;
        }
        let store = DirUsage::new(Duration::ZERO);
        let err = store.usage("u1", dir.path()).await.expect_err("refused");
        fs::set_permissions(&hidden, fs::Permissions::from_mode(0o755)).expect("chmod back");
        assert!(crate::format::error_chain(&err).starts_with("could not measure disk usage: "));
    }

    fn measure(root: &Path, before_open: &mut dyn FnMut(&Path)) -> io::Result<u64> {
        walk(root, &AtomicBool::new(false), before_open)
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_mid_walk_leads_nowhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
        fs::create_dir_all(root.join("a/b")).expect("mkdir");
        fs::write(root.join("a/b/mine"), [0u8; 10]).expect("write");
        fs::create_dir_all(outside.join("b")).expect("mkdir");
        fs::write(outside.join("b/host-secret"), [0u8; 1000]).expect("write");
        fs::write(outside.join("big"), [0u8; 5000]).expect("write");
        // Listed as a directory, swapped for a link to outside just before it is opened.
        let mut swapped = Vec::new();
        let total = measure(&root, &mut |path| {
            if path == Path::new("a") {
                fs::rename(root.join("a"), dir.path().join("a.moved")).expect("move");
                std::os::unix::fs::symlink(&outside, root.join("a")).expect("symlink");
                swapped.push(path.to_owned());
            }
        })
        .expect("measured");
        assert_eq!(swapped, [PathBuf::from("a")]);
        assert_eq!(total, 0, "nothing of outside was counted");
        // One level down, once the walk holds the handle of `a`: its `b` swapped for a link.
        fs::remove_file(root.join("a")).expect("rm link");
        fs::rename(dir.path().join("a.moved"), root.join("a")).expect("move back");
        let total = measure(&root, &mut |path| {
            if path == Path::new("a/b") {
                fs::rename(root.join("a/b"), dir.path().join("b.moved")).expect("move");
                std::os::unix::fs::symlink(outside.join("b"), root.join("a/b")).expect("symlink");
            }
        })
        .expect("measured");
        assert_eq!(total, 0);
        assert_eq!(measure(&root, &mut |_| {}).expect("measured"), 0);
        fs::write(root.join("a/own"), [0u8; 7]).expect("write");
        assert_eq!(measure(&root, &mut |_| {}).expect("measured"), 7);
    }

    #[test]
    fn the_walk_stops_when_asked_and_refuses_a_tree_too_deep() {
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..2 * STOP_CHECK_EVERY {
            fs::write(dir.path().join(format!("f{i}")), b"x").expect("write");
        }
        let stopped = walk(dir.path(), &AtomicBool::new(true), &mut |_| {});
        assert_eq!(
            stopped.expect_err("stopped").kind(),
            io::ErrorKind::Interrupted
        );
        let mut deep = dir.path().to_owned();
        for _ in 0..=MAX_WALK_DEPTH + 1 {
            deep.push("d");
        }
        fs::create_dir_all(&deep).expect("deep tree");
        let err = apparent_size(dir.path(), &AtomicBool::new(false)).expect_err("too deep");
        assert!(err.to_string().contains("deeper than"), "{err}");
    }

    /// Counts `disk quota check failed` warnings.
    struct WarnCounter(Arc<AtomicU32>);

    impl tracing::Subscriber for WarnCounter {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut message = Message(String::new());
            event.record(&mut message);
            if *event.metadata().level() == tracing::Level::WARN
                && message.0 == "disk quota check failed"
            {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    struct Message(String);

    impl tracing::field::Visit for Message {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            }
        }
    }
}

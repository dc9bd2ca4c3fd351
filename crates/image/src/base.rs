//! The debootstrap base: made in a temporary directory, streamed as a tar into the daemon.

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bollard::query_parameters::CreateImageOptionsBuilder;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::mirror::apt_mirror;
use crate::{BASE_PACKAGES, DEBOOTSTRAP_SUITE, ImageBuilder, ImageError};

impl ImageBuilder<'_> {
    /// debootstrap into a temporary directory, then stream it as a tar into the daemon.
    pub(crate) async fn make_base(&self, reference: &str) -> Result<(), ImageError> {
        if !rustix::process::geteuid().is_root() {
            return Err(ImageError::NotRoot);
        }
        // Removed on drop, whatever happens.
        let dir = tempfile::Builder::new()
            .prefix("zcbot-sandbox-base-")
            .tempdir()
            .map_err(ImageError::TempDir)?;
        self.debootstrap_and_import(dir.path(), reference).await
    }

    async fn debootstrap_and_import(&self, dir: &Path, reference: &str) -> Result<(), ImageError> {
        let mut cmd = tokio::process::Command::new("debootstrap");
        cmd.arg("--variant=minbase")
            .arg(format!("--include={}", BASE_PACKAGES.join(",")))
            .arg(DEBOOTSTRAP_SUITE)
            .arg(dir);
        let mirror = apt_mirror(DEBOOTSTRAP_SUITE);
        if let Some(m) = &mirror {
            cmd.arg(m);
        }
        self.progress.stage(&format!(
            "making the base with debootstrap ({DEBOOTSTRAP_SUITE}, minbase + {}) from {}",
            BASE_PACKAGES.join(", "),
            mirror.as_deref().unwrap_or("debootstrap's default mirror")
        ));
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    ImageError::DebootstrapMissing
                } else {
                    ImageError::DebootstrapRun(e)
                }
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut errors = BufReader::new(stderr).lines();
        let mut tail: Vec<String> = Vec::new();
        loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(l)) => self.progress.line(&l),
                    _ => break,
                },
                line = errors.next_line() => if let Ok(Some(l)) = line {
                    self.progress.line(&l);
                    tail.push(l);
                },
            }
        }
        while let Ok(Some(l)) = errors.next_line().await {
            tail.push(l);
        }
        let status = child.wait().await.map_err(ImageError::DebootstrapRun)?;
        if !status.success() {
            let start = tail.len().saturating_sub(5);
            return Err(ImageError::DebootstrapFailed {
                status,
                tail: tail[start..].join(" | "),
            });
        }
        // Docker provides /dev, /proc and /sys at run time; apt's downloaded packages are dead
        // weight.
        for sub in ["dev", "proc", "sys", "var/cache/apt/archives"] {
            empty_dir(&dir.join(sub));
        }
        self.import_base(dir, reference).await
    }

    async fn import_base(&self, dir: &Path, reference: &str) -> Result<(), ImageError> {
        let (repo, tag) = reference.split_once(':').expect("base reference has a tag");
        self.progress
            .stage(&format!("importing the base as {reference}"));
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
        let root = dir.to_path_buf();
        let writer = tokio::task::spawn_blocking(move || {
            let mut builder = tar::Builder::new(ChannelWriter::new(tx.clone()));
            builder.follow_symlinks(false);
            let result = builder
                .append_dir_all(".", &root)
                .and_then(|()| builder.into_inner())
                .and_then(|mut w| w.flush());
            if let Err(e) = &result {
                let _ = tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
            }
            result
        });
        let sent = Arc::new(AtomicU64::new(0));
        let body = body_stream(rx, Arc::clone(&sent));
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .build();
        let mut stream =
            self.docker
                .create_image(Some(options), Some(bollard::body_try_stream(body)), None);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        let mut failure = None;
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(_)) => {}
                    Some(Err(source)) => {
                        failure = Some(source);
                        break;
                    }
                    None => break,
                },
                _ = tick.tick() => self.progress.sent(sent.load(Ordering::Relaxed)),
            }
        }
        self.progress.sent(sent.load(Ordering::Relaxed));
        drop(stream);
        let written = writer.await.map_err(|e| {
            ImageError::ArchiveBase(io::Error::other(format!("the tar writer panicked: {e}")))
        })?;
        if let Some(source) = failure {
            return Err(ImageError::ImportBase {
                image: reference.to_owned(),
                source,
            });
        }
        written.map_err(ImageError::ArchiveBase)?;
        if self.has_image(reference).await?.is_none() {
            return Err(ImageError::BaseNotImported {
                image: reference.to_owned(),
            });
        }
        Ok(())
    }
}

/// The request body: chunks from the tar writer, counted as they go out.
fn body_stream(
    rx: mpsc::Receiver<io::Result<Bytes>>,
    sent: Arc<AtomicU64>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) })
        .inspect(move |item| {
            if let Ok(b) = item {
                sent.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
        })
}

/// A `Write` that sends 1 MiB chunks down a channel, for streaming a tar into a request body.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 1024 * 1024;

impl ChannelWriter {
    fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the daemon stopped reading"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

fn empty_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

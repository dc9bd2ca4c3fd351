//! A user root that is a filesystem of its own, so the kernel enforces its size for every
//! write (a `dd`, a `pip install`, a log), not only the file tools'.
//!
//! Each user root is the mount point of a sparse image file beside it (`.<user>.disk`),
//! formatted ext4 and loop-mounted `nosuid,nodev` when the user's sandbox is made, unmounted
//! when it is removed. The image stays, and with it the user's files. The size follows the
//! configuration at each mount: a larger one grows the filesystem, a smaller one shrinks it
//! if the files fit and is refused if they do not.
//!
//! Restart safety: a root already mounted from its own image is used as it is (a pool that
//! starts adopts the mounts of the last one), and [`our_mounts`] finds the mounts of images
//! whose sandbox is gone (a crash between mount and container start) so the pool can unmount
//! them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// How the disk quota is enforced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforce {
    /// A filesystem per user where the pool can make one (running as root, with loop
    /// devices), else the gate.
    #[default]
    Auto,
    /// Every user root is a filesystem of the quota's size (the kernel refuses writes past
    /// it with `ENOSPC`).
    Filesystem,
    /// Only the gate of `write` and `edit` (commands may write past it).
    Gate,
}

impl Enforce {
    /// What `Auto` means on this host: `Filesystem` when the process is root and loop devices
    /// exist, `Gate` otherwise.
    pub fn resolve(self) -> Enforce {
        match self {
            Enforce::Auto if can_mount() => Enforce::Filesystem,
            Enforce::Auto => Enforce::Gate,
            other => other,
        }
    }
}

/// Whether this process can loop-mount filesystems.
pub fn can_mount() -> bool {
    rustix::process::geteuid().is_root() && Path::new("/dev/loop-control").exists()
}

/// Why a user root's filesystem could not be made, resized or mounted.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A step failed.
    #[error("{step} {}: {reason}", .path.display())]
    Step {
        /// What was being done.
        step: &'static str,
        /// The image or mount point.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The quota was lowered below what the user's files take.
    #[error(
        "the disk quota of {} is {} but its files take {}: free space first, or keep the quota",
        .path.display(), bytesize::ByteSize(*.quota), bytesize::ByteSize(*.used)
    )]
    ShrinkBelowUsage {
        /// The user root.
        path: PathBuf,
        /// The new quota.
        quota: u64,
        /// Bytes in use.
        used: u64,
    },
}

fn step(step: &'static str, path: &Path, reason: impl ToString) -> DiskError {
    DiskError::Step {
        step,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The image file of the user root `root`: `.<name>.disk` beside it.
pub fn image_of(root: &Path) -> PathBuf {
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    root.with_file_name(format!(".{name}.disk"))
}

/// Runs `program` with `args`; its stderr is the error.
fn run(
    program: &str,
    args: &[&std::ffi::OsStr],
    what: &'static str,
    path: &Path,
) -> Result<(), DiskError> {
    run_allowing(program, args, what, path, &[0])
}

/// As [`run`], taking any exit code of `ok` as success.
fn run_allowing(
    program: &str,
    args: &[&std::ffi::OsStr],
    what: &'static str,
    path: &Path,
    ok: &[i32],
) -> Result<(), DiskError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| step(what, path, format!("running {program}: {e}")))?;
    if out.status.code().is_some_and(|c| ok.contains(&c)) {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    Err(step(
        what,
        path,
        format!("{program} {}: {said}", out.status),
    ))
}

/// Makes `root` the mount point of its own filesystem of `size` bytes, owned by `uid`:
/// formats the image the first time, resizes it when `size` changed, mounts it unless it is
/// mounted already.
pub fn mount(root: &Path, size: u64, uid: u32) -> Result<(), DiskError> {
    let image = image_of(root);
    if let Some(parent) = root.parent() {
        std::fs::create_dir_all(parent).map_err(|e| step("making the folder of", root, e))?;
    }
    let fresh = !image.exists();
    if fresh {
        make_image(&image, size, uid)?;
    }
    if is_mounted(root) {
        return Ok(());
    }
    if !fresh {
        resize(root, &image, size)?;
    }
    std::fs::create_dir_all(root).map_err(|e| step("making the mount point", root, e))?;
    run(
        "mount",
        &[
            "-o".as_ref(),
            "loop,nosuid,nodev,noatime".as_ref(),
            image.as_os_str(),
            root.as_os_str(),
        ],
        "mounting",
        &image,
    )?;
    // mke2fs's own folder (e2fsck puts it back): not the user's to see. One the user filled
    // stays.
    let _ = std::fs::remove_dir(root.join("lost+found"));
    // For the sandbox uid alone, as every user root the pool makes.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| step("restricting", root, e))
}

fn make_image(image: &Path, size: u64, uid: u32) -> Result<(), DiskError> {
    // Made under a temporary name: a crash half-way leaves nothing that looks formatted.
    let partial = image.with_extension("disk.partial");
    let file = std::fs::File::create(&partial).map_err(|e| step("creating", &partial, e))?;
    file.set_len(size)
        .map_err(|e| step("sizing", &partial, e))?;
    drop(file);
    let owner = format!("root_owner={uid}:{uid}");
    // No journal: the filesystem is the user's scratch space, and a journal would take part
    // of a small quota; `-m 0`: no blocks kept for root.
    run(
        "mkfs.ext4",
        &[
            "-q".as_ref(),
            "-F".as_ref(),
            "-m".as_ref(),
            "0".as_ref(),
            "-O".as_ref(),
            "^has_journal".as_ref(),
            "-E".as_ref(),
            owner.as_ref(),
            partial.as_os_str(),
        ],
        "formatting",
        &partial,
    )?;
    std::fs::rename(&partial, image).map_err(|e| step("naming", image, e))
}

/// Resizes the (unmounted) image to `size`, refusing to shrink below what its files take.
fn resize(root: &Path, image: &Path, size: u64) -> Result<(), DiskError> {
    let now = std::fs::metadata(image)
        .map_err(|e| step("reading", image, e))?
        .len();
    if now == size {
        return Ok(());
    }
    // 1: it fixed something (it puts back the `lost+found` the mount took away).
    run_allowing(
        "e2fsck",
        &["-f".as_ref(), "-p".as_ref(), image.as_os_str()],
        "checking",
        image,
        &[0, 1],
    )?;
    if size > now {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(image)
            .map_err(|e| step("opening", image, e))?;
        file.set_len(size).map_err(|e| step("growing", image, e))?;
        return run("resize2fs", &[image.as_os_str()], "growing", image);
    }
    let used = image_usage(image)?;
    if used > size {
        return Err(DiskError::ShrinkBelowUsage {
            path: root.to_owned(),
            quota: size,
            used,
        });
    }
    let blocks = format!("{}K", size / 1024);
    run(
        "resize2fs",
        &[image.as_os_str(), blocks.as_ref()],
        "shrinking",
        image,
    )?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .map_err(|e| step("opening", image, e))?;
    file.set_len(size).map_err(|e| step("shrinking", image, e))
}

/// Bytes in use in an unmounted image, from its superblock.
fn image_usage(image: &Path) -> Result<u64, DiskError> {
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(image)
        .output()
        .map_err(|e| step("reading the superblock of", image, e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    match (
        field("Block count:"),
        field("Free blocks:"),
        field("Block size:"),
    ) {
        (Some(count), Some(free), Some(bsize)) => Ok(count.saturating_sub(free) * bsize),
        _ => Err(step(
            "reading the superblock of",
            image,
            "dumpe2fs said no sizes",
        )),
    }
}

/// Unmounts `root` if its own image is mounted there. A mount still busy (a process of a
/// container on its way out) is detached: the kernel finishes it when the last user goes.
pub fn unmount(root: &Path) -> Result<(), DiskError> {
    if !is_mounted(root) {
        return Ok(());
    }
    use rustix::mount::{UnmountFlags, unmount};
    match unmount(root, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            unmount(root, UnmountFlags::DETACH).map_err(|e| step("unmounting", root, e))
        }
        Err(e) => Err(step("unmounting", root, e)),
    }
}

/// Bytes in use and in all on the filesystem mounted at `root`, when it is its own image's.
pub fn usage(root: &Path) -> Option<(u64, u64)> {
    if !is_mounted(root) {
        return None;
    }
    let st = rustix::fs::statvfs(root).ok()?;
    let total = st.f_blocks * st.f_frsize;
    Some((total.saturating_sub(st.f_bfree * st.f_frsize), total))
}

/// Whether `root` is the mount point of its own image.
pub fn is_mounted(root: &Path) -> bool {
    // Two stats first: the gate asks this before every write, mostly of roots that are no
    // mount point at all (a mount point's device differs from its parent's).
    let device = |p: &Path| rustix::fs::stat(p).ok().map(|st| st.st_dev);
    let Some(parent) = root.parent() else {
        return false;
    };
    if device(root).is_none() || device(root) == device(parent) {
        return false;
    }
    let image = image_of(root);
    loop_mounts()
        .into_iter()
        .any(|(at, loop_device)| at == root && backing_file(&loop_device) == Some(image.clone()))
}

/// User roots mounted from their own image (`<dir>/.<user>.disk` at `<dir>/<user>`).
pub fn our_mounts() -> Vec<PathBuf> {
    loop_mounts()
        .into_iter()
        .filter(|(at, loop_device)| backing_file(loop_device) == Some(image_of(at)))
        .map(|(at, _)| at)
        .collect()
}

/// Every loop mount of this mount namespace: (mount point, loop device name).
fn loop_mounts() -> Vec<(PathBuf, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let at = unescape(fields.get(4)?);
            let dash = fields.iter().position(|f| *f == "-")?;
            let device = fields.get(dash + 2)?.strip_prefix("/dev/")?;
            device
                .starts_with("loop")
                .then(|| (PathBuf::from(at), device.to_owned()))
        })
        .collect()
}

/// The file behind loop device `device` (`loop3`).
fn backing_file(device: &str) -> Option<PathBuf> {
    let path = std::fs::read_to_string(format!("/sys/block/{device}/loop/backing_file")).ok()?;
    Some(PathBuf::from(path.trim_end()))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            if let Ok(byte) = u8::from_str_radix(&code, 8) {
                out.push(byte as char);
                continue;
            }
            out.push('\\');
            out.push_str(&code);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_sits_beside_the_root() {
        assert_eq!(
            image_of(Path::new("/srv/users/alice")),
            Path::new("/srv/users/.alice.disk")
        );
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape(r"/srv/a\040b"), "/srv/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}

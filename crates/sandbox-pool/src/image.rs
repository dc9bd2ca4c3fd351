//! What a sandbox image is to the pool: the labels it carries (its sandbox user, uid and how
//! its runner is installed), the defaults, and the configuration it is built from. Building it
//! (debootstrap, the tar context, the Engine API build) is the `sandbox-image` crate's, so a
//! service that only runs sandboxes links none of that.

use serde::{Deserialize, Serialize};

/// Default image repository: `zcbot-sandbox` (tags are input hashes, plus `latest`).
pub const DEFAULT_REPO: &str = "zcbot-sandbox";
/// Default sandbox user name: `zcbot`, as the seed.
pub const DEFAULT_USER: &str = "zcbot";
/// Default sandbox uid (and gid): 61000. Never 0.
///
/// The sandbox uid owns every file a sandbox writes in its user root on the host, setuid ones
/// included (the sandbox may chmod its own files). So by default it is no one's login: above
/// the range Debian gives login accounts (1000 to 60000) and below systemd's dynamic users
/// (61184 up). The pool warns at start when the uid is a login account on the host.
pub const DEFAULT_UID: u32 = 61000;
/// Label on our images holding the sandbox uid, so the pool can read it back.
pub const UID_LABEL: &str = "zcbot.sandbox.uid";
/// Label on our images holding the sandbox user name.
pub const USER_LABEL: &str = "zcbot.sandbox.user";
/// Label on our images saying how the runner is installed: [`RUNNER_SEALED`] or
/// [`RUNNER_READABLE`].
pub const RUNNER_LABEL: &str = "zcbot.sandbox.runner";
/// The runner is executable but unreadable (mode 0711): the kernel starts every runner process
/// non-dumpable. gVisor cannot start it (its loader reads the program as the caller).
pub const RUNNER_SEALED: &str = "sealed";
/// The runner is readable (mode 0755), for gVisor: each runner process makes itself
/// non-dumpable first thing instead.
pub const RUNNER_READABLE: &str = "readable";

/// Which base to build on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseChoice {
    /// `debian:bookworm-slim` if the daemon has it, else the debootstrap base.
    #[default]
    Auto,
    /// This image, which the daemon must already have (we never pull unasked).
    Image(String),
    /// Always the debootstrap base.
    Debootstrap,
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// Repository of the image; the tag is the input hash.
    pub repo: String,
    /// Sandbox user name.
    pub user: String,
    /// Sandbox uid (and gid). Must not be 0.
    pub uid: u32,
    /// The base.
    pub base: BaseChoice,
    /// Pull the registry base (`debian:bookworm-slim`, or the `image` base) when the daemon
    /// lacks it. Off by default: without a registry a pull only waits and fails, and this
    /// project never reaches off the machine unasked. `Auto` then falls back to debootstrap.
    pub pull_base: bool,
    /// Build for gVisor: the runner installed readable ([`RUNNER_READABLE`]), since gVisor's
    /// loader reads a program as the user who runs it and cannot start an execute-only one.
    /// `pool-inspect image build` sets it when the pool's runtime is gVisor.
    pub gvisor: bool,
}

impl ImageConfig {
    /// The runner's file mode in the image.
    pub fn runner_mode(&self) -> u32 {
        if self.gvisor { 0o755 } else { 0o711 }
    }

    /// The moving tag of the newest build: `latest`, or `latest-gvisor` for gVisor (so that
    /// building one never changes what the other's pools start).
    pub fn latest_tag(&self) -> &'static str {
        if self.gvisor {
            "latest-gvisor"
        } else {
            "latest"
        }
    }

    /// The value of [`RUNNER_LABEL`] on the image.
    pub fn runner_label(&self) -> &'static str {
        if self.gvisor {
            RUNNER_READABLE
        } else {
            RUNNER_SEALED
        }
    }
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            repo: DEFAULT_REPO.to_owned(),
            user: DEFAULT_USER.to_owned(),
            uid: DEFAULT_UID,
            base: BaseChoice::Auto,
            pull_base: false,
            gvisor: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_for_gvisor_has_a_readable_runner_and_says_so() {
        let runc = ImageConfig::default();
        let gvisor = ImageConfig {
            gvisor: true,
            ..ImageConfig::default()
        };
        assert_eq!(
            (runc.runner_mode(), runc.runner_label()),
            (0o711, RUNNER_SEALED)
        );
        assert_eq!(
            (gvisor.runner_mode(), gvisor.runner_label()),
            (0o755, RUNNER_READABLE)
        );
    }
}

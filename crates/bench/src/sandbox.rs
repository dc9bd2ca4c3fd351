//! What every bench sandbox is from inside, as all three contenders address it: the user, the
//! workspace, and where the seed's runner is mounted. Its own module so that the contenders'
//! clients (`seed`, `floor`, `rss`) need nothing of the set-up in `bench`, which mounts the
//! runner.

/// The sandbox user of the image (`just image`'s default), as the seed's `--user`.
pub const SANDBOX_USER: &str = sandbox_pool::image::DEFAULT_USER;
/// Where the user root is mounted.
pub const WORKSPACE: &str = sandbox_pool::config::WORKSPACE;
/// Where the stand-in of the seed's `tool_runner.py` is mounted in every bench sandbox.
pub const RUNNER_MOUNT: &str = "/sandbox/bench";

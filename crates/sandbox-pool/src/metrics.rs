//! The pool's metrics, through the `metrics` facade (the service installs the recorder: a
//! Prometheus exporter, say). Every series carries the pool's name as `pool` and the Docker
//! engine's as `engine` (`local` for a pool of one engine).

/// Gauge: sandboxes the pool holds, by `state` (`running`; `exited` or `removed` when the
/// daemon said so and no call has replaced it yet).
pub const SANDBOXES: &str = "sandbox_pool_sandboxes";
/// Counter: containers made, by `reason` (`new`, or why the last one was replaced:
/// `removed`, `exited`, `oom_killed`, `unusable`, `config_changed`).
pub const CREATED: &str = "sandbox_pool_created_total";
/// Counter: idle sandboxes reaped.
pub const REAPED: &str = "sandbox_pool_reaped_total";
/// Counter: channels opened again after the first, by sandbox.
pub const CHANNEL_REOPENS: &str = "sandbox_pool_channel_reopens_total";
/// Counter: containers the daemon said died or were removed, by `event` (`die`, `destroy`).
pub const GONE: &str = "sandbox_pool_gone_total";

/// Gauge: 1 while the engine answers and takes new sandboxes, 0 while it is down.
pub const ENGINE_UP: &str = "sandbox_pool_engine_up";

/// The `reason` label of a creation.
pub(crate) fn reason(recreated: Option<&crate::Recreated>) -> &'static str {
    match recreated {
        None => "new",
        Some(crate::Recreated::Removed) => "removed",
        Some(crate::Recreated::Exited { .. }) => "exited",
        Some(crate::Recreated::OomKilled) => "oom_killed",
        Some(crate::Recreated::Unusable) => "unusable",
        Some(crate::Recreated::ConfigChanged) => "config_changed",
    }
}

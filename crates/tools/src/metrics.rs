//! The tools' metrics, through the `metrics` facade (the service installs the recorder).

use sandbox_exec::Tool;

use crate::executor::ToolResult;

/// Counter: sandbox tool calls, by `tool` and `outcome` (`ok`, `failed`: a non-zero exit or
/// an error, `timed_out`, `cancelled`, `lost`: the sandbox went away).
pub const CALLS: &str = "sandbox_tool_calls_total";
/// Histogram: seconds from a sandbox tool call's start to its result, by `tool`.
pub const CALL_SECONDS: &str = "sandbox_tool_call_seconds";
/// Counter: server-side kills (timeouts and cancels), by `nothing_left` (`true`, or `false`
/// when the kill could not prove it).
pub const KILLS: &str = "sandbox_tool_kills_total";
/// Counter: writes the disk-quota gate refused, by `tool`.
pub const QUOTA_REFUSALS: &str = "sandbox_tool_quota_refusals_total";

/// The `outcome` label of a result.
fn outcome(result: &ToolResult) -> &'static str {
    let meta = &result.meta;
    if meta.timed_out() {
        "timed_out"
    } else if meta.cancelled() {
        "cancelled"
    } else if meta.sandbox_lost() {
        "lost"
    } else if result.exit_code == 0 {
        "ok"
    } else {
        "failed"
    }
}

/// Counts one finished sandbox tool call.
pub(crate) fn record(tool: Tool, result: &ToolResult) {
    let tool = tool.name();
    ::metrics::counter!(CALLS, "tool" => tool, "outcome" => outcome(result)).increment(1);
    ::metrics::histogram!(CALL_SECONDS, "tool" => tool).record(result.meta.duration.as_secs_f64());
    if let Some(kill) = &result.meta.kill {
        let nothing_left = if kill.nothing_left() { "true" } else { "false" };
        ::metrics::counter!(KILLS, "nothing_left" => nothing_left).increment(1);
    }
}

/// Counts one write the quota gate refused.
pub(crate) fn quota_refused(tool: Tool) {
    ::metrics::counter!(QUOTA_REFUSALS, "tool" => tool.name()).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_exec::Termination;

    #[test]
    fn outcomes_follow_the_facts_before_the_exit_code() {
        let mut r = ToolResult::new("x", 0);
        assert_eq!(outcome(&r), "ok");
        r.exit_code = 3;
        assert_eq!(outcome(&r), "failed");
        r.exit_code = 124;
        r.meta.termination = Some(Termination::TimedOut);
        assert_eq!(outcome(&r), "timed_out");
        let mut r = ToolResult::new("x", 130);
        r.meta.termination = Some(Termination::Cancelled);
        assert_eq!(outcome(&r), "cancelled");
        let mut r = ToolResult::new("x", 1);
        r.meta.termination = Some(Termination::SandboxLost {
            reason: sandbox_exec::LostReason::ChannelLost,
        });
        assert_eq!(outcome(&r), "lost");
    }
}

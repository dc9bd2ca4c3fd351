//! What the pool and the tools export through the `metrics` facade, read as a Prometheus
//! scrape would (one recorder per process: this file holds one test).

use std::time::{Duration, Instant};

use e2e_tests::{FakeHost, TestTools, Transport, pool_config};
use serde_json::json;

/// The value of the series `name` with (at least) `labels`, 0 when it is not there.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Fails the test, showing the whole scrape, unless the series has the value `want`.
#[track_caller]
fn expect(text: &str, name: &str, labels: &[(&str, &str)], want: f64) {
    assert_eq!(
        value(text, name, labels),
        want,
        "{name} {labels:?} in:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_and_the_tools_export_their_metrics() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the process's recorder");
    let config = sandbox_tools::ToolsConfig {
        quotas: sandbox_tools::QuotaConfig {
            disk_bytes_per_user: Some(sandbox_pool::bytesize::ByteSize::kib(4)),
            ..Default::default()
        },
        ..Default::default()
    };
    let pool = sandbox_pool::PoolConfig {
        idle_timeout: Duration::from_millis(500),
        ..pool_config("metrics")
    };
    let t = TestTools::start_full(pool, FakeHost::all(), config)
        .await
        .on(Transport::Channel)
        .await;
    let name = t.pool.config().name_prefix.clone();
    let pool_label = ("pool", name.as_str());

    for (command, code) in [("true", 0), ("exit 3", 3)] {
        let r = t.call("shell", json!({"command": command})).await;
        assert_eq!(r.exit_code, code, "{r:?}");
    }
    let r = t
        .call("shell", json!({"command": "sleep 300", "timeout": 1}))
        .await;
    assert_eq!(r.exit_code, 124, "{r:?}");
    let r = t
        .call(
            "write",
            json!({"path": "big.txt", "content": "x".repeat(8192)}),
        )
        .await;
    assert_eq!(r.exit_code, 2, "{r:?}");
    // The channel killed between calls: the next call reopens it.
    let r = t
        .call(
            "shell",
            json!({"command": "(sleep 0.3; pkill -9 -f '^/sandbox/bin/sandbox-runner serve ') >/dev/null 2>&1 &"}),
        )
        .await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = t.call("shell", json!({"command": "true"})).await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    t.channel_opens().await;

    let text = handle.render();
    let calls = |outcome| {
        value(
            &text,
            "sandbox_tool_calls_total",
            &[("tool", "shell"), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("ok"), 3.0, "{text}");
    assert_eq!(calls("failed"), 1.0, "{text}");
    assert_eq!(calls("timed_out"), 1.0, "{text}");
    expect(
        &text,
        "sandbox_tool_kills_total",
        &[("nothing_left", "true")],
        1.0,
    );
    expect(
        &text,
        "sandbox_tool_quota_refusals_total",
        &[("tool", "write")],
        1.0,
    );
    expect(
        &text,
        "sandbox_tool_call_seconds_count",
        &[("tool", "shell")],
        5.0,
    );
    expect(
        &text,
        "sandbox_pool_created_total",
        &[pool_label, ("reason", "new")],
        1.0,
    );
    expect(
        &text,
        "sandbox_pool_channel_reopens_total",
        &[pool_label],
        1.0,
    );
    expect(
        &text,
        "sandbox_pool_sandboxes",
        &[pool_label, ("state", "running")],
        1.0,
    );

    // Removed from outside: the event says so before any call.
    let id = t.pool.ensure("u").await.expect("ensure").container_id;
    e2e_tests::force_remove(t.pool.docker(), &id).await;
    let started = Instant::now();
    while value(
        &handle.render(),
        "sandbox_pool_sandboxes",
        &[pool_label, ("state", "removed")],
    ) != 1.0
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}",
            handle.render()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = handle.render();
    expect(
        &text,
        "sandbox_pool_gone_total",
        &[pool_label, ("event", "destroy")],
        1.0,
    );

    // Made again, then idle past its timeout and reaped.
    let r = t.call("shell", json!({"command": "true"})).await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(t.pool.reap_idle().await, ["u"]);
    let text = handle.render();
    expect(
        &text,
        "sandbox_pool_created_total",
        &[pool_label, ("reason", "removed")],
        1.0,
    );
    expect(&text, "sandbox_pool_reaped_total", &[pool_label], 1.0);
    expect(
        &text,
        "sandbox_pool_sandboxes",
        &[pool_label, ("state", "running")],
        0.0,
    );
}

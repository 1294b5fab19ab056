//! Telemetry and the agent's health listener (`telemetry { Prometheus { ... } }`,
//! `health_checks { ... }`): after the same small workload (attest, create an entry, fetch
//! an SVID) both programs' `/metrics` must hold the metric families reference SPIRE emits
//! for it, with SPIRE's types and labels, and pass `promtool check metrics` with no finding
//! of a kind reference SPIRE's output does not have. The agent answers `/live` and `/ready`
//! as SPIRE's, and a health or metrics port already in use is logged, not fatal, as in SPIRE.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    AgentOpts, Deadline, Impl, Scenario, ServerOpts, agent_subject, client_unavailable, free_port,
    id, join_token_pair, server_subject, uid_selector,
};

/// Families reference SPIRE's server emits for the workload that spire-rs emits too.
const SERVER_FAMILIES: &[(&str, &str)] = &[
    ("spire_server_started", "gauge"),
    ("spire_server_datastore_node_fetch", "counter"),
    ("spire_server_datastore_node_fetch_elapsed_time", "summary"),
    ("spire_server_datastore_join_token_create", "counter"),
    (
        "spire_server_datastore_registration_entry_create",
        "counter",
    ),
    ("spire_server_datastore_node_selectors_set", "counter"),
    ("spire_server_datastore_bundle_fetch", "counter"),
    ("spire_server_datastore_ca_journal_set", "counter"),
    ("spire_server_uptime_in_ms", "gauge"),
    ("spire_server_rpc_agent_v1_agent_attest_agent", "counter"),
    (
        "spire_server_rpc_agent_v1_agent_attest_agent_elapsed_time",
        "summary",
    ),
    (
        "spire_server_rpc_agent_v1_agent_create_join_token",
        "counter",
    ),
    ("spire_server_rpc_bundle_v1_bundle_get_bundle", "counter"),
    (
        "spire_server_rpc_bundle_v1_bundle_get_bundle_elapsed_time",
        "summary",
    ),
    (
        "spire_server_rpc_entry_v1_entry_batch_create_entry",
        "counter",
    ),
    (
        "spire_server_rpc_entry_v1_entry_sync_authorized_entries",
        "counter",
    ),
    (
        "spire_server_rpc_svid_v1_svid_batch_new_x509svid",
        "counter",
    ),
    (
        "spire_server_rpc_svid_v1_svid_batch_new_x509svid_elapsed_time",
        "summary",
    ),
    (
        "spire_server_rateLimit_agent_v1_agent_attest_agent",
        "counter",
    ),
    (
        "spire_server_rateLimit_svid_v1_svid_batch_new_x509svid",
        "counter",
    ),
    (
        "spire_server_rateLimit_svid_v1_svid_batch_new_x509svid_elapsed_time",
        "summary",
    ),
    ("spire_server_server_ca_sign_x509_svid", "counter"),
    ("spire_server_svid_rotate", "counter"),
    ("spire_server_entry_cache_reload", "counter"),
    ("spire_server_entry_cache_reload_elapsed_time", "summary"),
    ("spire_server_svid_rotate_elapsed_time", "summary"),
    ("spire_server_ca_manager_x509_ca_prepare", "counter"),
    (
        "spire_server_ca_manager_x509_ca_prepare_elapsed_time",
        "summary",
    ),
    ("spire_server_ca_manager_jwt_key_prepare", "counter"),
    ("spire_server_ca_manager_x509_ca_activate", "counter"),
    ("spire_server_manager_jwt_key_activate", "counter"),
    ("spire_server_manager_x509_ca_rotate_expiration", "gauge"),
    ("spire_server_manager_x509_ca_rotate_ttl", "gauge"),
    ("spire_server_server_key_manager_generate_key", "counter"),
    ("spire_server_server_key_manager_get_public_keys", "counter"),
];

/// Families reference SPIRE's agent emits for the workload that spire-rs emits too.
const AGENT_FAMILIES: &[(&str, &str)] = &[
    ("spire_agent_started", "gauge"),
    ("spire_agent_uptime_in_ms", "gauge"),
    ("spire_agent_rpc_workload_api_fetch_x509svid", "counter"),
    (
        "spire_agent_rpc_workload_api_fetch_x509svid_elapsed_time",
        "summary",
    ),
    ("spire_agent_rpc_workload_api_fetch_x509_bundles", "counter"),
    ("spire_agent_workload_api_connection", "counter"),
    ("spire_agent_workload_api_connections", "gauge"),
    ("spire_agent_workload_api_discovered_selectors", "summary"),
    ("spire_agent_workload_api_workload_attestation", "counter"),
    ("spire_agent_workload_api_workload_attestor", "counter"),
    ("spire_agent_node_attestor_new_svid", "counter"),
    ("spire_agent_node_attestor_new_svid_elapsed_time", "summary"),
    ("spire_agent_agent_key_manager_generate_key", "counter"),
    ("spire_agent_agent_key_manager_get_keys", "counter"),
    ("spire_agent_manager_sync_fetch_entries_updates", "counter"),
    (
        "spire_agent_manager_sync_fetch_entries_updates_elapsed_time",
        "summary",
    ),
    ("spire_agent_manager_sync_fetch_svids_updates", "counter"),
    ("spire_agent_sync_entries_total", "gauge"),
    ("spire_agent_sync_entries_missing", "gauge"),
    ("spire_agent_sync_entries_stale", "gauge"),
    ("spire_agent_sync_entries_dropped", "gauge"),
    ("spire_agent_sync_bundles_total", "gauge"),
    ("spire_agent_lru_cache_entry_add", "counter"),
    ("spire_agent_lru_cache_entry_update", "counter"),
    ("spire_agent_lru_cache_entry_remove", "counter"),
    ("spire_agent_lru_cache_record_map_size", "gauge"),
    ("spire_agent_lru_cache_svid_map_size", "gauge"),
    ("spire_agent_bootstrap_attempts", "gauge"),
    ("spire_agent_bootstrap_seconds", "gauge"),
    ("spire_agent_bootstraped", "gauge"),
    ("spire_agent_store_store_svid_updates", "counter"),
    (
        "spire_agent_store_store_svid_updates_elapsed_time",
        "summary",
    ),
];

/// client_golang's process collector families, in both programs' expositions.
const PROCESS_FAMILIES: &[(&str, &str)] = &[
    ("process_cpu_seconds_total", "counter"),
    ("process_max_fds", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_virtual_memory_max_bytes", "gauge"),
    ("process_start_time_seconds", "gauge"),
    ("process_network_receive_bytes_total", "counter"),
    ("process_network_transmit_bytes_total", "counter"),
];

/// Families reference SPIRE emits for the workload that spire-rs does not (yet), and why.
/// Checked against the reference so the list stays true.
const NOT_BUILT: &[(&str, &str)] = &[
    (
        "spire_server_runtime_num_goroutines",
        "go-metrics' Go runtime gauges and summaries (runtime_*): there is no Go runtime",
    ),
    ("spire_agent_runtime_num_goroutines", "as above"),
];

/// The kinds of `promtool check metrics` findings reference SPIRE's output has.
const REFERENCE_LINT_KINDS: &[&str] = &[
    "counter metrics should have \"_total\" suffix",
    "metric names should not contain abbreviated units",
    "non-histogram and non-summary metrics should not have \"_count\" suffix",
    "metric names should be written in 'snake_case' not 'camelCase'",
    "non-counter metrics should not have \"_total\" suffix",
];

/// `GET path` on 127.0.0.1:port: (status, headers lower-cased, body).
async fn http_get(port: u16, path: &str) -> Result<(u16, String, String), String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .map_err(|_| "read timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, head.to_ascii_lowercase(), body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Family name → type, from the `# TYPE` lines, Go's own runtime families left out.
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .filter(|(n, _)| !n.starts_with("go_") && !n.starts_with("process_"))
        .map(|(n, t)| (n.to_string(), t.trim().to_string()))
        .collect()
}

/// Label names of the samples of `family` (the family itself, not `_sum`/`_count`).
fn label_names(exposition: &str, family: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in exposition.lines() {
        let Some(rest) = l.strip_prefix(family) else {
            continue;
        };
        let Some(labels) = rest.strip_prefix('{') else {
            continue;
        };
        let labels = labels.split('}').next().unwrap_or_default();
        for pair in labels.split(',') {
            if let Some((n, _)) = pair.split_once('=') {
                out.insert(n.to_string());
            }
        }
    }
    out
}

/// `promtool check metrics` on `exposition`: `None` without promtool, else the findings
/// (rc 0 or 3; rc 1, a parse error, fails the scenario).
fn promtool(sc: &Scenario, exposition: &str, what: &str) -> Option<Vec<String>> {
    use std::io::Write as _;
    let mut child = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            client_unavailable(sc, "promtool (Debian package prometheus)", &e.to_string());
            return None;
        }
    };
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rc = out.status.code().unwrap_or(-1);
    assert!(
        rc == 0 || rc == 3,
        "promtool check metrics failed on the {what} exposition (rc {rc}):\n{text}\n--- exposition ---\n{exposition}"
    );
    Some(text.lines().map(str::to_string).collect())
}

fn lint_kind(finding: &str) -> &str {
    finding.split_once(' ').map_or(finding, |(_, k)| k)
}

async fn scrape_until(port: u16, what: &str, needle: &str) -> String {
    let d = Deadline::new(format!("{what} /metrics to show {needle}"), 60);
    loop {
        let last = match http_get(port, "/metrics").await {
            Ok((200, _, body)) if body.contains(needle) => return body,
            Ok((code, _, body)) => format!("HTTP {code}: {}", crate::support::tail(&body, 2000)),
            Err(e) => e,
        };
        d.tick(last).await;
    }
}

fn telemetry_block(port: u16) -> String {
    format!(
        "telemetry {{\n    Prometheus {{\n        host = \"127.0.0.1\"\n        port = {port}\n    }}\n}}\n"
    )
}

fn health_block(port: u16, extra: &str) -> String {
    format!(
        "health_checks {{\n    listener_enabled = true\n    bind_address = \"127.0.0.1\"\n    bind_port = \"{port}\"\n    {extra}\n}}\n"
    )
}

fn check_families(
    sc: &Scenario,
    what: &str,
    imp: Impl,
    exposition: &str,
    expected: &[(&str, &str)],
) {
    let got = families(exposition);
    let missing: Vec<String> = expected
        .iter()
        .filter(|(n, t)| got.get(*n).map(String::as_str) != Some(*t))
        .map(|(n, t)| format!("{n} ({t}; got {:?})", got.get(*n)))
        .collect();
    assert!(
        missing.is_empty(),
        "{what} ({}) lacks families reference SPIRE emits: {missing:?}\nall: {:?}",
        imp.name(),
        got.keys().collect::<Vec<_>>()
    );
    let process: Vec<&str> = PROCESS_FAMILIES
        .iter()
        .filter(|(n, t)| !exposition.lines().any(|l| l == format!("# TYPE {n} {t}")))
        .map(|(n, _)| *n)
        .collect();
    assert!(
        process.is_empty(),
        "{what} ({}) lacks process families: {process:?}",
        imp.name()
    );
    if imp == Impl::Reference {
        let prefix = if what == "server" {
            "spire_server_"
        } else {
            "spire_agent_"
        };
        let absent: Vec<&str> = NOT_BUILT
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| n.starts_with(prefix) && !got.contains_key(*n))
            .collect();
        assert!(
            absent.is_empty(),
            "{}: NOT_BUILT names reference SPIRE does not emit: {absent:?}",
            sc.name
        );
    }
    if let Some(findings) = promtool(sc, exposition, what) {
        let unknown: Vec<&String> = findings
            .iter()
            .filter(|f| !REFERENCE_LINT_KINDS.contains(&lint_kind(f)))
            .collect();
        assert!(
            unknown.is_empty(),
            "{what} ({}): promtool findings of a kind reference SPIRE's output does not have: {unknown:?}",
            imp.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn metrics_after_a_workload() {
    let sc = Scenario::new("telemetry::metrics_after_a_workload");
    let (server_metrics, agent_metrics) = (free_port(), free_port());
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts {
            extra_top: telemetry_block(server_metrics),
            ..Default::default()
        },
        AgentOpts {
            extra_top: telemetry_block(agent_metrics),
            ..Default::default()
        },
    )
    .await;
    let wl = id("/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    agent.wait_x509(&wl, 60).await;

    let server_out = scrape_until(
        server_metrics,
        "server",
        "spire_server_rpc_svid_v1_svid_batch_new_x509svid{",
    )
    .await;
    // A streamed call counts when it ends; the agent health check's FetchX509Bundles runs
    // once the Workload API listens.
    let agent_out = scrape_until(
        agent_metrics,
        "agent",
        "spire_agent_rpc_workload_api_fetch_x509_bundles{",
    )
    .await;
    let agent_out = if agent_out.contains("spire_agent_rpc_workload_api_fetch_x509svid{") {
        agent_out
    } else {
        scrape_until(
            agent_metrics,
            "agent",
            "spire_agent_rpc_workload_api_fetch_x509svid{",
        )
        .await
    };
    std::fs::write(sc.path().join("server.metrics"), &server_out).ok();
    std::fs::write(sc.path().join("agent.metrics"), &agent_out).ok();

    check_families(&sc, "server", server.imp, &server_out, SERVER_FAMILIES);
    check_families(&sc, "agent", agent.imp, &agent_out, AGENT_FAMILIES);

    // Labels as SPIRE sets them.
    assert_eq!(
        label_names(&server_out, "spire_server_rpc_agent_v1_agent_attest_agent"),
        ["host", "status"].map(String::from).into(),
        "{server_out}"
    );
    assert!(
        server_out.contains("spire_server_rpc_agent_v1_agent_attest_agent{host=")
            && server_out.contains("status=\"OK\"} 1"),
        "{server_out}"
    );
    assert_eq!(
        label_names(&server_out, "spire_server_started"),
        ["host", "trust_domain_id", "version"]
            .map(String::from)
            .into()
    );
    assert!(
        server_out.contains("trust_domain_id=\"example_org\""),
        "{server_out}"
    );
    assert_eq!(
        label_names(&agent_out, "spire_agent_node_attestor_new_svid"),
        ["attestor", "host", "status"].map(String::from).into()
    );
    assert!(agent_out.contains("attestor=\"join_token\""), "{agent_out}");
    assert_eq!(
        label_names(&agent_out, "spire_agent_bootstrap_attempts"),
        ["host", "mode"].map(String::from).into()
    );
    assert_eq!(
        label_names(&agent_out, "spire_agent_workload_api_workload_attestor"),
        ["attestor", "host", "status"].map(String::from).into()
    );
    // The agent has no identity of its own on its Workload API: the health check's call
    // is denied.
    assert!(
        agent_out.contains("status=\"PermissionDenied\"")
            && label_names(
                &agent_out,
                "spire_agent_rpc_workload_api_fetch_x509_bundles"
            )
            .contains("status"),
        "{agent_out}"
    );
    // Timers are summaries with go-metrics' quantiles.
    for q in ["0.5", "0.9", "0.99"] {
        let needle = format!("quantile=\"{q}\"");
        assert!(
            server_out.lines().any(|l| l
                .starts_with("spire_server_rpc_svid_v1_svid_batch_new_x509svid_elapsed_time{")
                && l.contains(&needle)),
            "quantile {q}: {server_out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn agent_health_listener() {
    let sc = Scenario::new("telemetry::agent_health_listener");
    let health = free_port();
    let (_server, agent, _agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts::default(),
        AgentOpts {
            extra_top: health_block(
                health,
                "live_path = \"/alive\"\n    ready_path = \"/isready\"",
            ),
            ..Default::default()
        },
    )
    .await;
    let d = Deadline::new("agent health listener to answer ready", 60);
    let (code, head, body) = loop {
        let last = match http_get(health, "/isready").await {
            Ok((200, head, body)) => break (200, head, body),
            Ok((code, _, body)) => format!("HTTP {code}: {body}"),
            Err(e) => e,
        };
        d.tick(last).await;
    };
    assert_eq!(
        (code, body.as_str()),
        (200, "{\"agent\":{}}\n"),
        "{}",
        agent.imp.name()
    );
    assert!(head.contains("content-type: application/json"), "{head}");
    let (code, _, body) = http_get(health, "/alive").await.expect("GET /alive");
    assert_eq!((code, body.as_str()), (200, "{\"agent\":{}}\n"));
    let (code, head, body) = http_get(health, "/live").await.expect("GET /live");
    assert_eq!((code, body.as_str()), (404, "404 page not found\n"));
    assert!(
        head.contains("content-type: text/plain; charset=utf-8"),
        "{head}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn ports_in_use_are_logged_not_fatal() {
    let sc = Scenario::new("telemetry::ports_in_use_are_logged_not_fatal");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port to hold");
    let port = busy.local_addr().expect("local addr").port();
    let (server, mut agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts {
            extra_top: telemetry_block(port),
            ..Default::default()
        },
        AgentOpts {
            extra_top: format!("{}{}", telemetry_block(port), health_block(port, "")),
            ..Default::default()
        },
    )
    .await;
    server
        .wait_log("Prometheus listener stopped unexpectedly", 30)
        .await;
    agent
        .wait_log("Prometheus listener stopped unexpectedly", 30)
        .await;
    agent.wait_log("Error serving health checks", 30).await;
    let log = agent.log();
    assert!(
        log.contains("address already in use"),
        "{}",
        crate::support::tail(&log, 3000)
    );
    // Both keep serving.
    let wl = id("/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    agent.wait_x509(&wl, 60).await;
    assert!(agent.is_running());
    drop(busy);
}

/// A UDP collector on loopback gathering every line it receives.
struct Collector {
    port: u16,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start() -> Collector {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind a UDP collector");
        let port = socket.local_addr().expect("local addr").port();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = socket.recv(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                if let Ok(mut l) = sink.lock() {
                    l.extend(text.lines().map(str::to_owned));
                }
            }
        });
        Collector { port, lines, task }
    }

    /// The lines so far, the host name replaced by `<host>`.
    fn lines(&self) -> Vec<String> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string();
        let lines = self.lines.lock().map(|l| l.clone()).unwrap_or_default();
        lines
            .into_iter()
            .map(|l| {
                if host.is_empty() {
                    l
                } else {
                    l.replace(&format!("host:{host}"), "host:<host>")
                        .replace(&format!(".{host}:"), ".<host>:")
                }
            })
            .collect()
    }

    async fn wait_for(&self, what: &str, needle: &str) -> Vec<String> {
        let d = Deadline::new(what, 60);
        loop {
            let lines = self.lines();
            if lines.iter().any(|l| l.starts_with(needle)) {
                return lines;
            }
            d.tick(format!(
                "no line starting with {needle:?} among {} lines",
                lines.len()
            ))
            .await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn statsd_block(statsd: u16, dogstatsd: u16) -> String {
    format!(
        "telemetry {{\n    Statsd = [{{ address = \"127.0.0.1:{statsd}\" }}]\n    DogStatsd = [{{ address = \"127.0.0.1:{dogstatsd}\" }}]\n}}\n"
    )
}

/// `Statsd` and `DogStatsd` sinks: after the same workload, both programs send the lines
/// reference SPIRE sends (go-metrics' statsd names with label values folded in; DogStatsd
/// names with tags in SPIRE's label order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn statsd_and_dogstatsd_sinks() {
    let sc = Scenario::new("telemetry::statsd_and_dogstatsd_sinks");
    let (s_statsd, s_dog, a_statsd, a_dog) = (
        Collector::start().await,
        Collector::start().await,
        Collector::start().await,
        Collector::start().await,
    );
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts {
            extra_top: statsd_block(s_statsd.port, s_dog.port),
            ..Default::default()
        },
        AgentOpts {
            extra_top: statsd_block(a_statsd.port, a_dog.port),
            ..Default::default()
        },
    )
    .await;
    let wl = id("/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    agent.wait_x509(&wl, 60).await;

    // Everything each collector got once the agent reported its uptime (for comparing runs).
    a_dog
        .wait_for("agent DogStatsd uptime", "spire_agent.uptime_in_ms:")
        .await;
    for (c, name) in [
        (&s_statsd, "server-statsd"),
        (&s_dog, "server-dogstatsd"),
        (&a_statsd, "agent-statsd"),
        (&a_dog, "agent-dogstatsd"),
    ] {
        std::fs::write(sc.path().join(format!("{name}.all")), c.lines().join("\n")).ok();
    }
    let want = [
        (
            &s_dog,
            "server DogStatsd",
            "spire_server.rpc.agent.v1.agent.attest_agent:1|c|#status:OK,host:<host>",
        ),
        (
            &s_statsd,
            "server Statsd",
            "spire_server.rpc.agent.v1.agent.attest_agent.OK.<host>:1.000000|c",
        ),
        (
            &s_dog,
            "server DogStatsd",
            "spire_server.started:1|g|#version:",
        ),
        (&s_statsd, "server Statsd", "spire_server.started.1_13_3"),
        (
            &a_dog,
            "agent DogStatsd",
            "spire_agent.node.attestor.new_svid:1|c|#attestor:join_token,status:OK,host:<host>",
        ),
        (
            &a_statsd,
            "agent Statsd",
            "spire_agent.node.attestor.new_svid.join_token.OK.<host>:1.000000|c",
        ),
        (&a_dog, "agent DogStatsd", "spire_agent.uptime_in_ms:"),
        (
            &s_dog,
            "server DogStatsd",
            "spire_server.datastore.node.selectors.set:1|c|#status:OK,host:<host>",
        ),
        (
            &s_statsd,
            "server Statsd",
            "spire_server.datastore.registration_entry.create.OK.<host>:1.000000|c",
        ),
    ];
    for (collector, what, needle) in want {
        let lines = collector.wait_for(what, needle).await;
        std::fs::write(
            sc.path().join(format!("{}.lines", what.replace(' ', "-"))),
            lines.join("\n"),
        )
        .ok();
    }
    // Timers: DogStatsd's six-decimal milliseconds.
    let lines = s_dog
        .wait_for(
            "server DogStatsd timer",
            "spire_server.rpc.agent.v1.agent.attest_agent.elapsed_time:",
        )
        .await;
    let timer = lines
        .iter()
        .find(|l| l.starts_with("spire_server.rpc.agent.v1.agent.attest_agent.elapsed_time:"))
        .cloned()
        .unwrap_or_default();
    let value = timer
        .split_once(':')
        .and_then(|(_, r)| r.split_once('|'))
        .map(|(v, _)| v.to_string())
        .unwrap_or_default();
    assert!(
        value.split_once('.').is_some_and(|(_, d)| d.len() == 6),
        "{} timer {timer:?}",
        server.imp.name()
    );
    assert!(timer.ends_with("|ms|#status:OK,host:<host>"), "{timer}");
}

/// The value of the one sample of `family` in an exposition.
fn sample_value(exposition: &str, family: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The events-based cache's gauges on the server, and on the agent the SDS and Delegated
/// Identity "connection" metrics, the Delegated Identity API's RPC metrics and its
/// first-update latency, after an SDS fetch and a delegated X509-SVID subscription: the
/// families reference SPIRE emits, with the same gauge values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn cache_sds_and_delegated_identity_metrics() {
    let sc = Scenario::new("telemetry::cache_sds_and_delegated_identity_metrics");
    let Some(sds_bin) = crate::sds::sds_client(&sc) else {
        return;
    };
    let Some(di_bin) = crate::delegated_identity::delegated_client(&sc) else {
        return;
    };
    let (server_metrics, agent_metrics) = (free_port(), free_port());
    let mut agent_opts = crate::delegated_identity::agent_opts();
    agent_opts.extra_top = telemetry_block(agent_metrics);
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts {
            extra_server: "experimental {\n        events_based_cache = true\n    }".into(),
            extra_top: telemetry_block(server_metrics),
            ..Default::default()
        },
        agent_opts,
    )
    .await;
    let delegate = id("/delegate");
    server.workload_entry(&agent_id, &delegate, &uid_selector());
    let dw = id("/delegated/workload");
    server.entry_create(&[
        "-parentID",
        &agent_id,
        "-spiffeID",
        &dw,
        "-selector",
        crate::delegated_identity::DELEGATED_SELECTOR,
    ]);
    agent.wait_x509(&delegate, 60).await;

    // One SDS fetch, and a delegated subscription that gets the workload's SVID.
    let sds = crate::sds::fetch(&sds_bin, &agent, &["-names", "default"]);
    assert!(sds.get("error").is_none(), "{sds}");
    let c = crate::delegated_identity::Client::new(di_bin, &agent);
    let sel = ["-selector", crate::delegated_identity::DELEGATED_SELECTOR];
    crate::delegated_identity::wait_for(&c, "the delegated X509-SVID", "x509svids", &sel, |v| {
        crate::delegated_identity::svid_ids(v) == [dw.clone()]
    })
    .await;

    // The gauges follow the cache at its refresh pace (SPIRE's 5 s, our event poll's 1 s).
    let server_out = {
        let family = "spire_server_entry_entries_by_entryid_cache_count";
        let d = Deadline::new("the server's entry cache gauge to reach 2", 60);
        loop {
            let last = match http_get(server_metrics, "/metrics").await {
                Ok((200, _, body)) if sample_value(&body, family) == Some(2.0) => break body,
                Ok((code, _, body)) => {
                    format!("HTTP {code}: {}", crate::support::tail(&body, 2000))
                }
                Err(e) => e,
            };
            d.tick(last).await;
        }
    };
    let agent_out = scrape_until(
        agent_metrics,
        "agent",
        "spire_agent_delegated_identity_api_subscribe_x509_svids_first_update_elapsed_time",
    )
    .await;
    std::fs::write(sc.path().join("server.metrics"), &server_out).ok();
    std::fs::write(sc.path().join("agent.metrics"), &agent_out).ok();
    let server_families: &[(&str, &str)] = &[
        ("spire_server_node_agents_by_id_cache_count", "gauge"),
        ("spire_server_node_agents_by_expiresat_cache_count", "gauge"),
        ("spire_server_entry_entries_by_entryid_cache_count", "gauge"),
        (
            "spire_server_entry_entries_by_parentid_cache_count",
            "gauge",
        ),
        (
            "spire_server_entry_nodealiases_by_entryid_cache_count",
            "gauge",
        ),
        (
            "spire_server_entry_nodealiases_by_selector_cache_count",
            "gauge",
        ),
        ("spire_server_entry_skipped_entry_event_ids_count", "gauge"),
        ("spire_server_node_skipped_node_event_ids_count", "gauge"),
    ];
    check_families(&sc, "server", server.imp, &server_out, server_families);
    let agent_families: &[(&str, &str)] = &[
        ("spire_agent_sds_api_connection", "counter"),
        ("spire_agent_sds_api_connections", "gauge"),
        ("spire_agent_delegated_identity_api_connection", "counter"),
        ("spire_agent_delegated_identity_api_connections", "gauge"),
        (
            "spire_agent_delegated_identity_api_subscribe_x509_svids_first_update_elapsed_time",
            "summary",
        ),
        (
            "spire_agent_rpc_delegated_identity_subscribe_to_x509_svids",
            "counter",
        ),
        (
            "spire_agent_rpc_delegated_identity_subscribe_to_x509_svids_elapsed_time",
            "summary",
        ),
        ("spire_agent_rpc_sds_v3_fetch_secrets", "counter"),
    ];
    check_families(&sc, "agent", agent.imp, &agent_out, agent_families);
    // The gauges count what the cache holds: one agent, two entries (no node aliases).
    for (family, want) in [
        ("spire_server_node_agents_by_id_cache_count", 1.0),
        ("spire_server_node_agents_by_expiresat_cache_count", 1.0),
        ("spire_server_entry_entries_by_entryid_cache_count", 2.0),
        ("spire_server_entry_entries_by_parentid_cache_count", 2.0),
        ("spire_server_entry_nodealiases_by_entryid_cache_count", 0.0),
        ("spire_server_entry_skipped_entry_event_ids_count", 0.0),
    ] {
        assert_eq!(
            sample_value(&server_out, family),
            Some(want),
            "{family}: {server_out}"
        );
    }
    // The calls have ended: nothing stays open. Either agent lowers the gauge only once its
    // stream handler has seen the client go, which may come after the scrape above.
    let d = Deadline::new("the agent's connection gauges to fall to 0", 30);
    let mut out = agent_out;
    loop {
        let open: Vec<(&str, Option<f64>)> = [
            "spire_agent_sds_api_connections",
            "spire_agent_delegated_identity_api_connections",
        ]
        .into_iter()
        .map(|family| (family, sample_value(&out, family)))
        .filter(|(_, v)| *v != Some(0.0))
        .collect();
        if open.is_empty() {
            break;
        }
        d.tick(format!("{open:?}")).await;
        out = scrape_until(agent_metrics, "agent", "spire_agent_sds_api_connections").await;
    }
}

/// `(kind, name)` of go-metrics' InMem dump lines in a log (`[<interval>][G|C|S] '<name>': ...`),
/// each line's format checked on the way.
fn inmem_lines(log: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for line in log.lines() {
        let Some(i) = line.find("msg=\"[") else {
            continue;
        };
        let msg = &line[i + 5..];
        let Some((when, rest)) = msg[1..].split_once("][") else {
            continue;
        };
        if !(when.len() == 29 && when.ends_with(" +0000 UTC")) {
            continue;
        }
        let (kind, rest) = rest.split_at(1);
        let Some(rest) = rest.strip_prefix("] '") else {
            continue;
        };
        let Some((name, value)) = rest.split_once("': ") else {
            continue;
        };
        let ok = match kind {
            "G" => value.trim_end_matches('"').contains('.'),
            "C" | "S" => value.starts_with("Count: ") && value.contains(" LastUpdated: "),
            _ => false,
        };
        assert!(ok, "malformed InMem line: {line}");
        out.insert((kind.to_string(), name.to_string()));
    }
    out
}

/// `telemetry { InMem {} }` alone: SIGUSR1 writes go-metrics' dump of the finished
/// one-second intervals to the log, one info line per metric, names dotted with the label
/// values after them, as reference SPIRE's InmemSignal does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn inmem_sink_dumps_on_sigusr1() {
    let sc = Scenario::new("telemetry::inmem_sink_dumps_on_sigusr1");
    let inmem = "telemetry {\n    InMem {}\n}\n".to_string();
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts {
            extra_top: inmem.clone(),
            ..Default::default()
        },
        AgentOpts {
            extra_top: inmem,
            ..Default::default()
        },
    )
    .await;
    let wl = id("/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    agent.wait_x509(&wl, 60).await;
    // The interval being filled is not dumped: let the workload's close.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let signal = |pid: Option<u32>| {
        let pid = pid.expect("running").to_string();
        let out = std::process::Command::new("kill")
            .args(["-USR1", &pid])
            .output()
            .expect("kill");
        assert!(out.status.success(), "kill -USR1 {pid}: {out:?}");
    };
    signal(server.pid());
    signal(agent.pid());
    let want_server = [
        ("C", "spire_server.rpc.agent.v1.agent.attest_agent"),
        (
            "S",
            "spire_server.rpc.agent.v1.agent.attest_agent.elapsed_time",
        ),
        ("C", "spire_server.rpc.svid.v1.svid.batch_new_x509svid"),
        ("C", "spire_server.datastore.registration_entry.create"),
    ];
    let want_agent = [
        ("C", "spire_agent.node.attestor.new_svid"),
        ("C", "spire_agent.manager.sync.fetch_entries_updates"),
        ("G", "spire_agent.lru_cache_record_map_size"),
    ];
    for (what, want, log) in [
        (
            "server",
            &want_server[..],
            Box::new(|| server.log()) as Box<dyn Fn() -> String>,
        ),
        ("agent", &want_agent[..], Box::new(|| agent.log())),
    ] {
        let d = Deadline::new(format!("the {what}'s InMem dump"), 30);
        loop {
            let lines = inmem_lines(&log());
            // Names carry the label values after them (status, host, ...): match prefixes.
            let missing: Vec<String> = want
                .iter()
                .filter(|(k, n)| {
                    !lines
                        .iter()
                        .any(|(lk, ln)| lk == k && (ln == n || ln.starts_with(&format!("{n}."))))
                })
                .map(|(k, n)| format!("[{k}] {n}"))
                .collect();
            if missing.is_empty() {
                break;
            }
            d.tick(format!("missing {missing:?} in {lines:?}")).await;
        }
    }
    // The process goes on serving after the dump.
    assert!(server.cli(&["bundle", "show"]).ok());
}

/// The OpenTelemetry receiver (OpenTelemetry's own Python bindings, a venv built by
/// `conformance/otlp/setup.sh`), listening on a free port: (process, port).
fn otlp_receiver(sc: &Scenario, name: &str) -> Option<(crate::support::Proc, u16)> {
    let root = crate::support::workspace_root();
    let out = crate::support::run(
        std::path::Path::new("bash"),
        &[&root.join("conformance/otlp/setup.sh").display().to_string()],
        None,
    );
    if !out.ok() {
        client_unavailable(sc, "OTLP receiver (opentelemetry-proto)", &out.to_string());
        return None;
    }
    let python = std::path::PathBuf::from(out.stdout.trim());
    let port = free_port();
    let p = crate::support::Proc::spawn(
        &python,
        &[
            &root
                .join("conformance/otlp/receiver.py")
                .display()
                .to_string(),
            &port.to_string(),
        ],
        sc.path().join(format!("{name}.otlp")),
        &[],
    );
    Some((p, port))
}

/// The last data point's value of `metric` in the receiver's requests, with the kind of
/// metric it came as.
fn otlp_point(lines: &str, metric: &str) -> Option<(String, serde_json::Value)> {
    let mut found = None;
    for line in lines.lines().filter(|l| l.starts_with('{')) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        for rm in v["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    if m["name"] != metric {
                        continue;
                    }
                    for kind in ["sum", "gauge", "summary"] {
                        if let Some(p) = m[kind]["dataPoints"].as_array().and_then(|a| a.last()) {
                            let mut p = p.clone();
                            p["service"] =
                                rm["resource"]["attributes"][0]["value"]["stringValue"].clone();
                            found = Some((kind.to_string(), p));
                        }
                    }
                }
            }
        }
    }
    found
}

/// The server spans named `name` in the receiver's trace requests (their JSON).
fn otlp_spans(lines: &str, name: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for line in lines.lines().filter(|l| l.contains("\"resourceSpans\"")) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        for rs in v["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for sp in ss["spans"].as_array().into_iter().flatten() {
                    if sp["name"] == name {
                        out.push(sp.clone());
                    }
                }
            }
        }
    }
    out
}

/// A spire-rs addition: `telemetry { OpenTelemetry { endpoint, export_interval } }` exports
/// the metrics and a server span per gRPC call over OTLP/gRPC, read here by a collector on
/// OpenTelemetry's own protocol bindings: counters as cumulative sums with their labels as
/// attributes, timers as summaries in milliseconds, gauges as gauges, `service.name` on
/// the resource, and spans named `<service>/<method>` with the gRPC status code.
/// Reference SPIRE has no such export (and ignores the block), so only our programs are
/// checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn opentelemetry_export() {
    let sc = Scenario::new("telemetry::opentelemetry_export");
    if server_subject() == Impl::Reference && agent_subject() == Impl::Reference {
        crate::support::skip(&sc, "reference SPIRE has no OpenTelemetry export");
        return;
    }
    let Some((server_rx, server_port)) = otlp_receiver(&sc, "server") else {
        return;
    };
    let Some((agent_rx, agent_port)) = otlp_receiver(&sc, "agent") else {
        return;
    };
    let block = |port: u16| {
        format!(
            "telemetry {{\n    OpenTelemetry {{\n        endpoint = \"http://127.0.0.1:{port}\"\n        export_interval = \"1s\"\n    }}\n}}\n"
        )
    };
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts {
            extra_top: block(server_port),
            ..Default::default()
        },
        AgentOpts {
            extra_top: block(agent_port),
            ..Default::default()
        },
    )
    .await;
    let wl = id("/workload");
    server.workload_entry(&agent_id, &wl, &uid_selector());
    agent.wait_x509(&wl, 60).await;
    type Check<'a> = (&'a str, &'a crate::support::Proc, &'a [(&'a str, &'a str)]);
    let mut checks: Vec<Check<'_>> = Vec::new();
    let spans: &[(&str, &str)] = &[
        (
            "spire-server",
            "spire.api.server.agent.v1.Agent/AttestAgent",
        ),
        ("spire-agent", "SpiffeWorkloadAPI/FetchX509SVID"),
    ];
    let server_want: &[(&str, &str)] = &[
        ("spire_server_rpc_agent_v1_agent_attest_agent", "sum"),
        (
            "spire_server_rpc_agent_v1_agent_attest_agent_elapsed_time",
            "summary",
        ),
        ("spire_server_started", "gauge"),
        ("spire_server_rpc_svid_v1_svid_batch_new_x509svid", "sum"),
    ];
    let agent_want: &[(&str, &str)] = &[
        ("spire_agent_node_attestor_new_svid", "sum"),
        ("spire_agent_started", "gauge"),
        ("spire_agent_rpc_workload_api_fetch_x509svid", "sum"),
    ];
    if server.imp == Impl::SpireRs {
        checks.push(("spire-server", &server_rx, server_want));
    }
    if agent.imp == Impl::SpireRs {
        checks.push(("spire-agent", &agent_rx, agent_want));
    }
    for (service, rx, want) in checks {
        let d = Deadline::new(format!("{service}'s metrics at the OTLP receiver"), 60);
        loop {
            let got = rx.output();
            let missing: Vec<String> = want
                .iter()
                .filter(|(m, kind)| {
                    otlp_point(&got, m).is_none_or(|(k, p)| k != *kind || p["service"] != *service)
                })
                .map(|(m, k)| format!("{m} ({k})"))
                .collect();
            if missing.is_empty() {
                let (_, p) = otlp_point(&got, want[0].0).expect("point");
                assert!(p["asDouble"].as_f64().unwrap_or(0.0) >= 1.0, "{p}");
                let attrs: Vec<String> = p["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        format!(
                            "{}={}",
                            a["key"].as_str().unwrap_or(""),
                            a["value"]["stringValue"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                assert!(attrs.iter().any(|a| a == "status=OK"), "{attrs:?}");
                let span_name = spans
                    .iter()
                    .find(|(s, _)| *s == service)
                    .map(|(_, n)| *n)
                    .unwrap_or_default();
                if let Some(sp) = otlp_spans(&got, span_name).first() {
                    assert_eq!(sp["kind"], "SPAN_KIND_SERVER", "{sp}");
                    let code = sp["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|a| a["key"] == "rpc.grpc.status_code")
                        .map(|a| a["value"]["intValue"].clone());
                    assert!(code.is_some(), "{sp}");
                    assert!(
                        sp["traceId"].as_str().is_some_and(|t| !t.is_empty()),
                        "{sp}"
                    );
                    break;
                }
            }
            d.tick(format!(
                "missing {missing:?}; received: {}",
                crate::support::tail(&got, 1500)
            ))
            .await;
        }
    }
}

//! Unit tests of the `Metrics` handle: names, labels, filters, the listener.

use super::*;
use spire_config::PrometheusConfig;

fn config() -> TelemetryConfig {
    TelemetryConfig {
        prometheus: Some(PrometheusConfig {
            host: "127.0.0.1".into(),
            port: 0,
        }),
        ..Default::default()
    }
}

fn metrics(cfg: &TelemetryConfig, service: Service) -> Metrics {
    match Metrics::configure(cfg, service, "example.org", Some("vm".into())) {
        Ok(t) => t.metrics,
        Err(e) => unreachable!("{e}"),
    }
}

fn lines(m: &Metrics) -> Vec<String> {
    let mut v: Vec<String> = m.render().lines().map(str::to_owned).collect();
    v.sort();
    v
}

#[test]
fn no_sink_means_disabled_and_silent() {
    let t = Metrics::configure(&TelemetryConfig::default(), Service::Agent, "td", None);
    let Ok(t) = t else { unreachable!() };
    assert!(!t.metrics.enabled());
    assert!(t.prometheus.is_none());
    t.metrics.incr_counter(&["x"], 1.0, &[]);
    assert_eq!(t.metrics.render(), "");
}

#[test]
fn unsupported_sinks_are_refused() {
    let mut cfg = config();
    cfg.m3 = vec![spire_config::M3Config {
        address: "127.0.0.1:9052".into(),
        env: "prod".into(),
    }];
    assert!(Metrics::configure(&cfg, Service::Server, "td", None).is_ok());
    cfg.m3[0].env = String::new();
    assert!(matches!(
        Metrics::configure(&cfg, Service::Server, "td", None).err(),
        Some(TelemetryError::Sink("M3", _))
    ));
    let mut cfg = config();
    cfg.statsd = vec![spire_config::StatsdConfig {
        address: "nowhere".into(),
    }];
    assert!(matches!(
        Metrics::configure(&cfg, Service::Server, "td", None).err(),
        Some(TelemetryError::Sink("Statsd", _))
    ));
    let mut cfg = config();
    cfg.prometheus = Some(PrometheusConfig {
        host: "localhost".into(),
        port: 70000,
    });
    assert_eq!(
        Metrics::configure(&cfg, Service::Server, "td", None).err(),
        Some(TelemetryError::InvalidPort(70000))
    );
}

#[test]
fn in_mem_alone_records_for_the_sigusr1_dump() {
    let cfg = TelemetryConfig {
        in_mem: true,
        ..Default::default()
    };
    let Ok(t) = Metrics::configure(&cfg, Service::Server, "td", Some("h".into())) else {
        unreachable!()
    };
    assert!(t.metrics.enabled());
    assert!(t.warnings.is_empty());
    t.metrics
        .incr_counter(&["rpc", "x"], 1.0, &[("status", "OK")]);
    let sink = t
        .metrics
        .inner
        .as_ref()
        .and_then(|i| i.inmem.clone())
        .unwrap_or_default();
    // A second later the interval is finished and dumped.
    let dump = sink.dump_at(std::time::SystemTime::now() + std::time::Duration::from_secs(2));
    assert_eq!(dump.len(), 1, "{dump:?}");
    assert!(
        dump[0].contains("[C] 'spire_server.rpc.x.OK.h': Count: 1 Sum: 1.000 LastUpdated: "),
        "{dump:?}"
    );
}

#[test]
fn started_gauge_and_counters_render_as_spire_s() {
    let m = metrics(&config(), Service::Server);
    m.emit_started("1.13.3-dev-unk", "example.org");
    m.incr_counter(&["server_ca", "sign", "x509_svid"], 1.0, &[]);
    m.incr_counter(&["server_ca", "sign", "x509_svid"], 1.0, &[]);
    let out = lines(&m);
    assert!(out.contains(
        &r#"spire_server_started{host="vm",trust_domain_id="example_org",version="1_13_3_dev_unk"} 1"#
            .to_owned()
    ), "{out:?}");
    assert!(out.contains(&"spire_server_server_ca_sign_x509_svid{host=\"vm\"} 2".to_owned()));
    assert!(out.contains(&"# TYPE spire_server_server_ca_sign_x509_svid counter".to_owned()));
    assert!(
        out.contains(
            &"# HELP spire_server_server_ca_sign_x509_svid spire_server_server_ca_sign_x509_svid"
                .to_owned()
        )
    );
    assert!(out.contains(&"# TYPE spire_server_started gauge".to_owned()));
}

#[test]
fn calls_emit_a_counter_and_an_elapsed_time_summary() {
    let m = metrics(&config(), Service::Agent);
    let mut call = m.start_call(&["node", "attestor", "new_svid"]);
    call.add_label("attestor", "join_token");
    call.done(tonic::Code::Ok);
    let out = lines(&m);
    assert!(
        out.contains(
            &r#"spire_agent_node_attestor_new_svid{attestor="join_token",host="vm",status="OK"} 1"#
                .to_owned()
        ),
        "{out:?}"
    );
    assert!(
        out.contains(&"# TYPE spire_agent_node_attestor_new_svid_elapsed_time summary".to_owned())
    );
    for q in ["0.5", "0.9", "0.99"] {
        assert!(
            out.iter().any(|l| l.starts_with(&format!(
                r#"spire_agent_node_attestor_new_svid_elapsed_time{{attestor="join_token",host="vm",status="OK",quantile="{q}"}}"#
            ))),
            "{out:?}"
        );
    }
    assert!(out.contains(
        &r#"spire_agent_node_attestor_new_svid_elapsed_time_count{attestor="join_token",host="vm",status="OK"} 1"#
            .to_owned()
    ));
}

#[test]
fn prefix_trust_domain_and_hostname_labels_follow_the_configuration() {
    let mut cfg = config();
    cfg.metric_prefix = Some("custom".into());
    cfg.enable_trust_domain_label = true;
    cfg.enable_hostname_label = false;
    let m = metrics(&cfg, Service::Server);
    m.set_gauge(&["g"], 3.0, &[]);
    assert!(lines(&m).contains(&r#"custom_g{trust_domain="example_org"} 3"#.to_owned()));
}

#[test]
fn prefixes_and_labels_are_filtered() {
    let mut cfg = config();
    cfg.blocked_prefixes = vec!["spire_server.datastore".into()];
    cfg.blocked_labels = vec!["host".into()];
    let m = metrics(&cfg, Service::Server);
    m.incr_counter(&["datastore", "node", "fetch"], 1.0, &[("status", "OK")]);
    m.incr_counter(&["rpc", "x"], 1.0, &[("status", "OK")]);
    let out = m.render();
    assert!(!out.contains("datastore"), "{out}");
    assert!(
        out.contains(r#"spire_server_rpc_x{status="OK"} 1"#),
        "{out}"
    );
}

#[tokio::test]
async fn the_listener_serves_the_exposition_on_any_path() {
    let Ok(t) = Metrics::configure(&config(), Service::Server, "td", Some("vm".into())) else {
        unreachable!()
    };
    t.metrics.incr_counter(&["c"], 1.0, &[]);
    let Some(listener) = t.prometheus else {
        unreachable!()
    };
    let addr = match listener.start().await {
        Ok(a) => a,
        Err(e) => unreachable!("{e}"),
    };
    let mut stream = match tokio::net::TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => unreachable!("{e}"),
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream
        .write_all(b"GET /anything HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out).await;
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(out.contains("text/plain; version=0.0.4"), "{out}");
    assert!(out.contains(r#"spire_server_c{host="vm"} 1"#), "{out}");
}

#[tokio::test]
async fn a_port_in_use_is_an_error_to_report() {
    let Ok(busy) = std::net::TcpListener::bind("127.0.0.1:0") else {
        return;
    };
    let Ok(port) = busy.local_addr().map(|a| a.port()) else {
        return;
    };
    let mut cfg = config();
    cfg.prometheus = Some(PrometheusConfig {
        host: "127.0.0.1".into(),
        port: i64::from(port),
    });
    let Ok(t) = Metrics::configure(&cfg, Service::Server, "td", None) else {
        unreachable!()
    };
    let Some(listener) = t.prometheus else {
        unreachable!()
    };
    let err = listener.start().await.err();
    assert_eq!(err.map(|e| e.kind()), Some(std::io::ErrorKind::AddrInUse));
}

#[test]
fn statsd_and_dogstatsd_sinks_get_what_prometheus_gets() {
    let statsd = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dog = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&statsd, &dog] {
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
    }
    let cfg = TelemetryConfig {
        statsd: vec![spire_config::StatsdConfig {
            address: statsd.local_addr().unwrap().to_string(),
        }],
        dogstatsd: vec![spire_config::StatsdConfig {
            address: dog.local_addr().unwrap().to_string(),
        }],
        enable_hostname_label: true,
        enable_trust_domain_label: true,
        blocked_prefixes: vec!["spire_server.blocked".into()],
        ..Default::default()
    };
    let Ok(t) = Metrics::configure(&cfg, Service::Server, "example.org", Some("vm".into())) else {
        unreachable!()
    };
    assert!(t.metrics.enabled() && t.prometheus.is_none());
    t.metrics.incr_counter(&["blocked"], 1.0, &[]);
    t.metrics
        .incr_counter(&["node", "attest"], 1.0, &[("attestor", "join_token")]);
    let recv = |s: &std::net::UdpSocket| {
        let mut buf = [0u8; 2048];
        let n = s.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert_eq!(
        recv(&statsd),
        "spire_server.node.attest.join_token.example_org.vm:1.000000|c"
    );
    assert_eq!(
        recv(&dog),
        "spire_server.node.attest:1|c|#attestor:join_token,trust_domain:example_org,host:vm"
    );
    assert_eq!(t.metrics.render(), "");
}

#[test]
fn open_telemetry_settings_are_checked_at_configure() {
    let cfg = TelemetryConfig {
        open_telemetry: Some(spire_config::OpenTelemetryConfig {
            endpoint: "localhost:4317".into(),
            export_interval: "10s".into(),
        }),
        ..Default::default()
    };
    let err = Metrics::configure(&cfg, Service::Agent, "td", None).unwrap_err();
    assert!(
        err.to_string().contains("invalid OpenTelemetry endpoint"),
        "{err}"
    );
    let cfg = TelemetryConfig {
        open_telemetry: Some(spire_config::OpenTelemetryConfig {
            endpoint: "http://localhost:4317".into(),
            export_interval: "10s".into(),
        }),
        ..Default::default()
    };
    let Ok(t) = Metrics::configure(&cfg, Service::Agent, "td", None) else {
        unreachable!()
    };
    assert!(t.metrics.enabled());
}

//! Unit tests: both halves of http_challenge on loopback, the server's checks of the
//! payload, and agents that redirect, stall, are unreachable or answer wrongly.

use std::sync::Arc;

use spire_plugin::Code;
use spire_plugin_host::hostservices::AgentLookup;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::nodeattestor::testexchange::run;

struct Known(bool);

#[async_trait]
impl AgentLookup for Known {
    async fn is_attested(&self, _agent_id: &str) -> Result<bool, String> {
        Ok(self.0)
    }
}

fn lookup(attested: bool) -> AgentLookupCell {
    let cell: AgentLookupCell = Arc::default();
    let _ = cell.set(Arc::new(Known(attested)));
    cell
}

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn server_with(f: impl FnOnce(&mut ServerConfig)) -> PluginResult<HttpChallengeServer> {
    let mut cfg = ServerConfig::default();
    f(&mut cfg);
    HttpChallengeServer::new(&cfg, td(), lookup(false))
}

fn loopback_agent(f: impl FnOnce(&mut AgentConfig)) -> HttpChallengeAgent {
    let mut cfg = AgentConfig {
        hostname: "127.0.0.1".into(),
        ..Default::default()
    };
    f(&mut cfg);
    HttpChallengeAgent::new(&cfg)
        .unwrap()
        .with_bind_host("127.0.0.1")
}

#[tokio::test]
async fn attests_on_loopback() {
    let srv = server_with(|_| {}).unwrap();
    let attested = run(&loopback_agent(|_| {}), &srv).await.unwrap();
    assert_eq!(
        attested.agent_id.to_string(),
        "spiffe://example.org/spire/agent/http_challenge/127.0.0.1"
    );
    assert_eq!(attested.selector_values, vec!["hostname:127.0.0.1"]);
    assert!(!attested.can_reattest, "TOFU agents cannot re-attest");

    // A fixed port, a named agent, and TOFU off where only root ports are allowed.
    let port = free_port();
    let srv = server_with(|c| {
        c.required_port = Some(i64::from(port));
    })
    .unwrap();
    let attested = run(
        &loopback_agent(|c| {
            c.port = i64::from(port);
            c.agentname = "node7".into();
        }),
        &srv,
    )
    .await
    .unwrap();
    assert_eq!(attested.selector_values, vec!["hostname:127.0.0.1"]);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn an_attested_agent_id_cannot_attest_again_with_tofu() {
    let srv = HttpChallengeServer::new(&ServerConfig::default(), td(), lookup(true)).unwrap();
    let err = run(&loopback_agent(|_| {}), &srv).await.unwrap_err();
    assert_eq!(err.code, Code::PermissionDenied);
    assert_eq!(
        err.message,
        "attestation data has already been used to attest an agent"
    );
    // Without TOFU (only root ports allowed) the same agent may attest again.
    let srv = HttpChallengeServer::new(
        &ServerConfig {
            allow_non_root_ports: Some(false),
            tofu: Some(false),
            ..Default::default()
        },
        td(),
        lookup(true),
    )
    .unwrap();
    assert!(!srv.tofu);
}

#[test]
fn configuration_errors() {
    let tofu_err = "you can not turn off trust on first use (TOFU) when non-root ports are allowed";
    for f in [
        (|c: &mut ServerConfig| c.tofu = Some(false)) as fn(&mut ServerConfig),
        |c| {
            c.tofu = Some(false);
            c.allow_non_root_ports = Some(true);
        },
        |c| {
            c.tofu = Some(false);
            c.required_port = Some(8080);
        },
    ] {
        assert_eq!(server_with(f).unwrap_err().message, tofu_err);
    }
    server_with(|c| {
        c.tofu = Some(false);
        c.required_port = Some(80);
    })
    .unwrap();
    let err = server_with(|c| c.allowed_dns_patterns = vec!["(".into()]).unwrap_err();
    assert_eq!(err.code, Code::InvalidArgument);
    assert!(
        err.message
            .starts_with("cannot compile allowed_dns_pattern: \"(\", "),
        "{err}"
    );
}

/// A challenger that records the challenge and answers a newline, as SPIRE's agent does.
struct Newline(Option<Vec<u8>>);

#[async_trait]
impl Challenger for Newline {
    async fn challenge(&mut self, c: Vec<u8>) -> PluginResult<Vec<u8>> {
        self.0 = Some(c);
        Ok(b"\n".to_vec())
    }
}

fn payload(host: &str, agent: &str, port: i64) -> Vec<u8> {
    serde_json::to_vec(&AttestationData {
        host_name: host.into(),
        agent_name: agent.into(),
        port,
    })
    .unwrap()
}

async fn attest_payload(srv: &HttpChallengeServer, p: Vec<u8>) -> (PluginError, bool) {
    let mut ch = Newline(None);
    let err = srv.attest(p, &mut ch).await.unwrap_err();
    (err, ch.0.is_some())
}

#[tokio::test]
async fn disallowed_hosts_ports_and_names_are_refused_before_any_challenge() {
    let srv = server_with(|c| {
        c.allowed_dns_patterns = vec![r"^node[0-9]+\.example\.org$".into()];
    })
    .unwrap();
    let (err, challenged) = attest_payload(&srv, payload("10.0.0.1", "default", 80)).await;
    assert_eq!(
        (err.code, err.message.as_str(), challenged),
        (
            Code::PermissionDenied,
            "the requested hostname is not allowed to connect",
            false
        )
    );
    let (err, _) = attest_payload(&srv, payload("localhost", "default", 80)).await;
    assert_eq!(err.message, "you can not use localhost as a hostname");

    let srv = server_with(|c| c.required_port = Some(8080)).unwrap();
    let (err, challenged) = attest_payload(&srv, payload("node1", "default", 1234)).await;
    assert_eq!(
        (err.code, err.message.as_str(), challenged),
        (
            Code::InvalidArgument,
            "port 1234 is not allowed to be used by this server",
            false
        )
    );
    let srv = server_with(|c| c.allow_non_root_ports = Some(false)).unwrap();
    let (err, _) = attest_payload(&srv, payload("node1", "default", 1234)).await;
    assert_eq!(err.message, "port 1234 is not allowed to be >= 1024");

    let srv = server_with(|_| {}).unwrap();
    for name in ["", "a", "my-agent", "a.b", "1abc", &"a".repeat(33)] {
        let (err, challenged) = attest_payload(&srv, payload("node1", name, 80)).await;
        assert_eq!(
            (err.code, err.message.as_str(), challenged),
            (Code::InvalidArgument, "agent name is not valid", false),
            "{name:?}"
        );
    }
    let (err, _) = attest_payload(&srv, Vec::new()).await;
    assert_eq!(err.message, "missing attestation payload");
    let (err, _) = attest_payload(&srv, br#"{"port":"x"}"#.to_vec()).await;
    assert!(
        err.message.starts_with("failed to unmarshal data: "),
        "{err}"
    );
}

#[test]
fn agent_names_follow_spires_pattern() {
    for ok in [
        "default",
        "agent1",
        "ab-",
        "node7",
        "AB",
        "a_b",
        &"a".repeat(32),
    ] {
        assert!(valid_agent_name(ok), "{ok:?}");
    }
    for bad in ["", "a", "my-agent", "a.b", "1abc", "ab$", &"a".repeat(33)] {
        assert!(!valid_agent_name(bad), "{bad:?}");
    }
}

#[tokio::test]
async fn targets_the_fetch_cannot_use_are_refused_after_the_challenge() {
    let srv = server_with(|_| {}).unwrap();
    for (host, port, want) in [
        ("a/b", 80, "hostname can not contain a slash"),
        ("a:b", 80, "hostname can not contain a colon"),
        ("node1", 0, "port is invalid"),
        ("node1", 70000, "dial tcp: address 70000: invalid port"),
    ] {
        let (err, challenged) = attest_payload(&srv, payload(host, "default", port)).await;
        assert_eq!(err.code, Code::PermissionDenied);
        assert_eq!(
            err.message,
            format!("challenge verification failed: {want}")
        );
        assert!(challenged);
    }
}

/// A one-shot HTTP server on loopback that reads a request and answers `response` (or
/// nothing at all when `None`, holding the connection open).
async fn fake_agent(response: Option<&'static [u8]>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut read = 0;
        while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf[read..]).await.unwrap();
            if n == 0 {
                return;
            }
            read += n;
        }
        match response {
            Some(r) => s.write_all(r).await.unwrap(),
            None => std::future::pending::<()>().await,
        }
    });
    port
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let port = fake_agent(Some(
        b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data\r\nContent-Length: 0\r\n\r\n",
    ))
    .await;
    let srv = server_with(|_| {}).unwrap();
    let (err, _) = attest_payload(&srv, payload("127.0.0.1", "default", i64::from(port))).await;
    assert_eq!(err.code, Code::PermissionDenied);
    assert_eq!(
        err.message,
        format!(
            "challenge verification failed: Get \"http://127.0.0.1:{port}/.well-known/spiffe/nodeattestor/http_challenge/default/challenge\": redirects are not followed (\"302 Found\" to \"http://169.254.169.254/latest/meta-data\")"
        )
    );
}

#[tokio::test]
async fn a_wrong_or_oversized_answer_is_refused() {
    let port = fake_agent(Some(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nwrong\n")).await;
    let srv = server_with(|_| {}).unwrap();
    let (err, _) = attest_payload(&srv, payload("127.0.0.1", "default", i64::from(port))).await;
    assert_eq!(err.code, Code::PermissionDenied);
    assert!(
        err.message
            .starts_with("challenge verification failed: expected nonce \"")
            && err.message.ends_with("\" but got \"wrong\\n\""),
        "{err}"
    );
    // Only the first 64 bytes are read.
    let body = fetch_answer(
        "127.0.0.1",
        fake_agent(Some(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ))
        .await,
        "default",
        FETCH_TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(body.len(), 64);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_agent_times_out_after_ten_seconds() {
    let port = fake_agent(None).await;
    let srv = server_with(|_| {}).unwrap();
    let started = tokio::time::Instant::now();
    let (err, _) = attest_payload(&srv, payload("127.0.0.1", "default", i64::from(port))).await;
    assert_eq!(err.code, Code::PermissionDenied);
    assert!(
        err.message.ends_with(": context deadline exceeded"),
        "{err}"
    );
    assert_eq!(started.elapsed(), FETCH_TIMEOUT);
}

#[tokio::test]
async fn an_unreachable_agent_fails_at_once() {
    let port = free_port();
    let srv = server_with(|_| {}).unwrap();
    let (err, _) = attest_payload(&srv, payload("127.0.0.1", "default", i64::from(port))).await;
    assert_eq!(
        err.message,
        format!(
            "challenge verification failed: Get \"http://127.0.0.1:{port}/.well-known/spiffe/nodeattestor/http_challenge/default/challenge\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        )
    );
}

#[tokio::test]
async fn the_agent_answers_only_on_its_path_and_fails_on_a_busy_port() {
    let agent = loopback_agent(|_| {});
    let listener = agent.listen().await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve_nonce(
        listener,
        challenge_path("default"),
        "the-nonce".into(),
    ));
    let ok = fetch_answer("127.0.0.1", port, "default", FETCH_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(ok, b"the-nonce\n");
    let other = fetch_answer("127.0.0.1", port, "other", FETCH_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(other, b"404 page not found\n");

    let busy = loopback_agent(|c| c.port = i64::from(port));
    let err = busy.listen().await.unwrap_err();
    assert!(
        err.message
            .starts_with(&format!("could not listen on port {port}: ")),
        "{err}"
    );
    server.abort();
}

#[test]
fn agent_defaults() {
    let agent = HttpChallengeAgent::new(&AgentConfig {
        port: 8080,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(agent.agent_name, "default");
    assert_eq!(agent.advertised_port, 8080);
    assert!(!agent.host_name.is_empty());
    let agent = HttpChallengeAgent::new(&AgentConfig {
        port: 8080,
        advertised_port: 80,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(agent.advertised_port, 80);
}

#[test]
fn the_payload_uses_spires_field_names() {
    let v: serde_json::Value = serde_json::from_slice(&payload("node1", "default", 80)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"hostname": "node1", "agentname": "default", "port": 80})
    );
}

#[tokio::test]
async fn dns_patterns_are_go_regular_expressions() {
    let srv = server_with(|c| {
        c.allowed_dns_patterns = vec![r"(?i)^node\d+\.example\.org$".into(), "^edge-".into()];
    })
    .unwrap();
    for ok in ["NODE1.example.org", "node22.Example.ORG", "edge-7"] {
        srv.validate_host_name(ok).unwrap();
    }
    for bad in ["node.example.org", "xnode1.example.org.evil", "10.0.0.1"] {
        assert_eq!(
            srv.validate_host_name(bad).unwrap_err().message,
            "the requested hostname is not allowed to connect",
            "{bad}"
        );
    }
}

//! `k8s_psat` unit tests: both halves against a fake API that returns what a real API server
//! returns (the same answers are checked live in `tests/apiserver.rs`).

use super::*;
use crate::client::types::{Node, ObjectMeta, Pod, PodSpec, PodStatus, UserInfo};
use parking_lot::Mutex;

#[derive(Debug, Default)]
struct FakeApi {
    status: Mutex<Option<Result<TokenReviewStatus, K8sError>>>,
    pod: Mutex<Option<Result<Pod, K8sError>>>,
    node: Mutex<Option<Result<Node, K8sError>>>,
    asked_audiences: Mutex<Vec<String>>,
}

#[async_trait]
impl ClusterApi for FakeApi {
    async fn token_review(
        &self,
        _token: &str,
        audiences: &[String],
    ) -> Result<TokenReviewStatus, K8sError> {
        *self.asked_audiences.lock() = audiences.to_vec();
        self.status.lock().clone().unwrap()
    }
    async fn get_pod(&self, _ns: &str, _name: &str) -> Result<Pod, K8sError> {
        self.pod.lock().clone().unwrap()
    }
    async fn get_node(&self, _name: &str) -> Result<Node, K8sError> {
        self.node.lock().clone().unwrap()
    }
}

struct NoChallenge;
#[async_trait]
impl Challenger for NoChallenge {
    async fn challenge(&mut self, _c: Vec<u8>) -> PluginResult<Vec<u8>> {
        panic!("k8s_psat never challenges")
    }
}

fn good_status() -> TokenReviewStatus {
    let mut extra = BTreeMap::new();
    extra.insert(POD_NAME_KEY.to_string(), vec!["agent-1".to_string()]);
    extra.insert(POD_UID_KEY.to_string(), vec!["pod-uid".to_string()]);
    TokenReviewStatus {
        authenticated: true,
        user: UserInfo {
            username: "system:serviceaccount:spire:spire-agent".into(),
            extra,
            ..Default::default()
        },
        audiences: vec!["spire-server".into()],
        error: String::new(),
    }
}

fn good_pod() -> Pod {
    let mut labels = BTreeMap::new();
    labels.insert("app".to_string(), "spire-agent".to_string());
    labels.insert("secret".to_string(), "no".to_string());
    Pod {
        metadata: ObjectMeta {
            name: "agent-1".into(),
            labels,
            ..Default::default()
        },
        spec: PodSpec {
            node_name: "node-1".into(),
            ..Default::default()
        },
        status: PodStatus {
            host_ip: "10.0.0.5".into(),
            ..Default::default()
        },
    }
}

fn good_node() -> Node {
    let mut labels = BTreeMap::new();
    labels.insert("zone".to_string(), "a".to_string());
    Node {
        metadata: ObjectMeta {
            name: "node-1".into(),
            uid: "node-uid".into(),
            labels,
            ..Default::default()
        },
    }
}

fn server(api: Arc<FakeApi>, audience: Option<Vec<String>>) -> PsatServer {
    let mut clusters = BTreeMap::new();
    clusters.insert(
        "test".to_string(),
        ClusterConfig {
            service_account_allow_list: vec!["spire:spire-agent".into()],
            audience,
            allowed_node_label_keys: vec!["zone".into()],
            allowed_pod_label_keys: vec!["app".into()],
            ..Default::default()
        },
    );
    PsatServer::with_api(
        &ServerConfig { clusters },
        TrustDomain::new("example.org").unwrap(),
        move |_| api.clone() as Arc<dyn ClusterApi>,
    )
    .unwrap()
}

fn fake() -> Arc<FakeApi> {
    let api = FakeApi::default();
    *api.status.lock() = Some(Ok(good_status()));
    *api.pod.lock() = Some(Ok(good_pod()));
    *api.node.lock() = Some(Ok(good_node()));
    Arc::new(api)
}

fn payload(cluster: &str, token: &str) -> Vec<u8> {
    serde_json::to_vec(&AttestationData {
        cluster: cluster.into(),
        token: token.into(),
    })
    .unwrap()
}

#[tokio::test]
async fn attests_with_spire_id_and_selectors() {
    let api = fake();
    let s = server(api.clone(), None);
    let a = s
        .attest(payload("test", "tok"), &mut NoChallenge)
        .await
        .unwrap();
    assert_eq!(
        a.agent_id.to_string(),
        "spiffe://example.org/spire/agent/k8s_psat/test/node-uid"
    );
    assert!(a.can_reattest);
    assert_eq!(
        a.selector_values,
        vec![
            "cluster:test",
            "agent_ns:spire",
            "agent_sa:spire-agent",
            "agent_pod_name:agent-1",
            "agent_pod_uid:pod-uid",
            "agent_node_ip:10.0.0.5",
            "agent_node_name:node-1",
            "agent_node_uid:node-uid",
            "agent_node_label:zone:a",
            "agent_pod_label:app:spire-agent",
        ]
    );
    assert_eq!(
        *api.asked_audiences.lock(),
        vec!["spire-server".to_string()]
    );
}

async fn err_of(s: &PsatServer, p: Vec<u8>) -> String {
    s.attest(p, &mut NoChallenge).await.unwrap_err().to_string()
}

#[tokio::test]
async fn bad_payloads_are_refused_with_spires_messages() {
    let s = server(fake(), None);
    assert!(
        err_of(&s, vec![])
            .await
            .contains("missing attestation payload")
    );
    assert!(
        err_of(&s, b"{".to_vec())
            .await
            .contains("failed to unmarshal data payload")
    );
    assert!(
        err_of(&s, payload("", "t"))
            .await
            .contains("missing cluster in attestation data")
    );
    assert!(
        err_of(&s, payload("test", ""))
            .await
            .contains("missing token in attestation data")
    );
    assert!(
        err_of(&s, payload("other", "t"))
            .await
            .contains("not configured for cluster \"other\"")
    );
}

#[tokio::test]
async fn token_review_outcomes() {
    let api = fake();
    let s = server(api.clone(), None);

    let mut st = good_status();
    st.authenticated = false;
    st.error = String::new();
    *api.status.lock() = Some(Ok(st));
    assert!(
        err_of(&s, payload("test", "t"))
            .await
            .contains("token not authenticated according to TokenReview API")
    );

    let mut st = good_status();
    st.authenticated = false;
    st.error = "[invalid bearer token, service account token has been invalidated]".into();
    *api.status.lock() = Some(Ok(st));
    assert!(err_of(&s, payload("test", "t")).await.contains(
        "unable to validate token with TokenReview API: token review API response contains an error: [invalid bearer token, service account token has been invalidated]"
    ));

    let mut st = good_status();
    st.audiences = vec!["other".into()];
    *api.status.lock() = Some(Ok(st));
    assert!(err_of(&s, payload("test", "t")).await.contains(
        "token review API did not validate audience: wanted one of [\"spire-server\"] but got [\"other\"]"
    ));

    let mut st = good_status();
    st.user.username = "system:serviceaccount:default:default".into();
    *api.status.lock() = Some(Ok(st));
    assert!(
        err_of(&s, payload("test", "t"))
            .await
            .contains("\"default:default\" is not an allowed service account")
    );

    let mut st = good_status();
    st.user.username = "admin".into();
    *api.status.lock() = Some(Ok(st));
    assert!(err_of(&s, payload("test", "t")).await.contains(
        "fail to parse username from token review status: unexpected username format: admin"
    ));

    let mut st = good_status();
    st.user.extra.remove(POD_UID_KEY);
    *api.status.lock() = Some(Ok(st));
    assert!(
        err_of(&s, payload("test", "t"))
            .await
            .contains("fail to get pod UID from token review status: missing pod UID")
    );

    *api.status.lock() = Some(Err(K8sError::Transport {
        method: "Post".into(),
        url: "https://127.0.0.1:1/apis/authentication.k8s.io/v1/tokenreviews".into(),
        why: "dial tcp 127.0.0.1:1: connect: connection refused".into(),
    }));
    assert!(err_of(&s, payload("test", "t")).await.contains(
        "unable to validate token with TokenReview API: unable to query token review API: Post \"https://127.0.0.1:1/apis/authentication.k8s.io/v1/tokenreviews\": dial tcp 127.0.0.1:1: connect: connection refused"
    ));
}

#[tokio::test]
async fn deleted_pod_and_empty_node_uid() {
    let api = fake();
    let s = server(api.clone(), None);
    *api.pod.lock() = Some(Err(K8sError::Status {
        code: 404,
        reason: "NotFound".into(),
        message: "pods \"agent-1\" not found".into(),
    }));
    assert!(err_of(&s, payload("test", "t")).await.contains(
        "fail to get pod from k8s API server: unable to query pods API: pods \"agent-1\" not found"
    ));
    *api.pod.lock() = Some(Ok(good_pod()));
    let mut node = good_node();
    node.metadata.uid.clear();
    *api.node.lock() = Some(Ok(node));
    assert!(
        err_of(&s, payload("test", "t"))
            .await
            .contains("node UID is empty")
    );
}

#[tokio::test]
async fn audience_configuration() {
    let api = fake();
    let s = server(api.clone(), Some(vec![]));
    s.attest(payload("test", "t"), &mut NoChallenge)
        .await
        .unwrap();
    assert!(
        api.asked_audiences.lock().is_empty(),
        "empty audience: the API server's own"
    );
    let s = server(api.clone(), Some(vec!["a".into(), "spire-server".into()]));
    s.attest(payload("test", "t"), &mut NoChallenge)
        .await
        .unwrap();
    assert_eq!(api.asked_audiences.lock().len(), 2);
}

#[test]
fn configuration_errors() {
    let mut clusters = BTreeMap::new();
    clusters.insert("c".to_string(), ClusterConfig::default());
    let err = PsatServer::new(
        &ServerConfig { clusters },
        TrustDomain::new("example.org").unwrap(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "cluster \"c\" configuration must have at least one service account allowed"
    );
    assert_eq!(
        PsatAgent::new(&AgentConfig::default()).unwrap_err(),
        "missing required cluster block"
    );
    let a = PsatAgent::new(&AgentConfig {
        cluster: "c".into(),
        token_path: String::new(),
    })
    .unwrap();
    assert_eq!(a.token_path, PathBuf::from(DEFAULT_TOKEN_PATH));
}

struct Recorder(Vec<Vec<u8>>);
#[async_trait]
impl AttestationExchange for Recorder {
    async fn send(&mut self, data: Vec<u8>) -> PluginResult<Option<Vec<u8>>> {
        self.0.push(data);
        Ok(None)
    }
}

#[tokio::test]
async fn agent_sends_cluster_and_token_and_reports_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let a = PsatAgent::new(&AgentConfig {
        cluster: "prod".into(),
        token_path: path.display().to_string(),
    })
    .unwrap();
    let err = a
        .attest(&mut Recorder(vec![]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "unable to load token from {0}: open {0}: no such file or directory",
            path.display()
        )),
        "{err}"
    );
    std::fs::write(&path, "").unwrap();
    let err = a
        .attest(&mut Recorder(vec![]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is empty"), "{err}");
    std::fs::write(&path, "header.payload.sig").unwrap();
    let mut r = Recorder(vec![]);
    a.attest(&mut r).await.unwrap();
    assert_eq!(
        String::from_utf8(r.0[0].clone()).unwrap(),
        r#"{"cluster":"prod","token":"header.payload.sig"}"#
    );
}

#[test]
fn agent_ids_join_like_go() {
    let td = TrustDomain::new("example.org").unwrap();
    assert_eq!(
        agent_id(PLUGIN_NAME, &td, "a/./b", "uid")
            .unwrap()
            .to_string(),
        "spiffe://example.org/spire/agent/k8s_psat/a/b/uid"
    );
    assert!(agent_id(PLUGIN_NAME, &td, "bad cluster", "uid").is_err());
}

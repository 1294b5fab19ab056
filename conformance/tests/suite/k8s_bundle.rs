//! The bundle in Kubernetes, against a real kube-apiserver (`support::k8s`): Notifier
//! `k8sbundle` writes the X.509 authorities into an existing ConfigMap and into the
//! `caBundle` of labelled webhook configurations; BundlePublisher `k8s_configmap` applies
//! the bundle (SPIFFE format) to a ConfigMap it creates. Both follow a CA change. A server
//! whose notifier cannot find its ConfigMap refuses to start, as SPIRE's does.

use base64::Engine as _;

use crate::support::k8s::Cluster;
use crate::support::pki::pem_certs;
use crate::support::{Deadline, Scenario, Server, ServerOpts, server_subject, tail};

const WEBHOOK: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: spire-test-hook
  labels: {"spiffe.io/webhook": "true"}
webhooks:
- name: hook.spiffe.example.org
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Ignore
  clientConfig: {url: "https://127.0.0.1:1/mutate"}
  rules:
  - {apiGroups: ["example.org"], apiVersions: ["v1"], operations: ["CREATE"], resources: ["nothings"]}
"#;

fn plugins(kubeconfig: &str) -> String {
    format!(
        r#"Notifier "k8sbundle" {{
        plugin_data {{
            namespace = "spire"
            kube_config_file_path = "{kubeconfig}"
            webhook_label = "spiffe.io/webhook"
            api_service_label = "spiffe.io/apiservice"
        }}
    }}
    BundlePublisher "k8s_configmap" {{
        plugin_data {{
            clusters = {{
                "test" = {{
                    format = "spiffe"
                    namespace = "spire"
                    configmap_name = "spire-bundle-spiffe"
                    configmap_key = "bundle.spiffe"
                    kubeconfig_path = "{kubeconfig}"
                }}
            }}
        }}
    }}"#
    )
}

/// DER certificates.
type Certs = Vec<Vec<u8>>;

/// The certificates the three objects carry now: the notifier's ConfigMap, the webhook's
/// `caBundle`, the publisher's SPIFFE bundle.
fn published(k8s: &Cluster) -> (Certs, Certs, Certs) {
    let cm = k8s.jsonpath(
        &["-n", "spire", "configmap", "spire-bundle"],
        "{.data.bundle\\.crt}",
    );
    let hook = k8s.jsonpath(
        &["mutatingwebhookconfiguration", "spire-test-hook"],
        "{.webhooks[0].clientConfig.caBundle}",
    );
    let hook = base64::engine::general_purpose::STANDARD
        .decode(hook.trim())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let spiffe = k8s
        .kubectl(&[
            "-n",
            "spire",
            "get",
            "configmap",
            "spire-bundle-spiffe",
            "-o",
            "jsonpath={.data.bundle\\.spiffe}",
        ])
        .stdout;
    let spiffe_x509: Certs = serde_json::from_str::<serde_json::Value>(&spiffe)
        .ok()
        .and_then(|v| v["keys"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|k| k["use"] == "x509-svid")
        .filter_map(|k| k["x5c"][0].as_str().map(str::to_string))
        .filter_map(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        .collect();
    (pem_certs(&cm), pem_certs(&hook), spiffe_x509)
}

async fn wait_published(k8s: &Cluster, server: &Server, what: &str) {
    let d = Deadline::new(what.to_string(), 60);
    loop {
        let want = pem_certs(&server.bundle_pem());
        let (cm, hook, spiffe) = published(k8s);
        if cm == want && hook == want && spiffe == want {
            return;
        }
        d.tick(format!(
            "want {} authorities; configmap {}, webhook {}, spiffe configmap {}\nserver log: {}",
            want.len(),
            cm.len(),
            hook.len(),
            spiffe.len(),
            tail(&server.log(), 1500)
        ))
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn configmaps_and_webhooks_follow_the_bundle() {
    let sc = Scenario::new("k8s_bundle::configmaps_and_webhooks_follow_the_bundle");
    let Some(k8s) = Cluster::start(&sc) else {
        return;
    };
    k8s.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: spire}\n");
    let kubeconfig = k8s.kubeconfig.display().to_string();
    let opts = ServerOpts {
        extra_plugins: plugins(&kubeconfig),
        ..Default::default()
    };

    // No ConfigMap yet: the notifier's start-up notification fails and so does the server.
    let mut refused = Server::new(&sc, "refused", server_subject(), opts.clone());
    let status = refused.run_expecting_exit(60).await;
    assert!(
        !status.success(),
        "a server whose notifier failed must not run"
    );
    let log = refused.log();
    assert!(
        log.contains("configmaps \\\"spire-bundle\\\" not found")
            || log.contains("configmaps \"spire-bundle\" not found"),
        "the reason is logged: {}",
        tail(&log, 2000)
    );

    k8s.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: spire-bundle, namespace: spire}\n",
    );
    k8s.apply(WEBHOOK);
    let server = Server::start_new(&sc, "server", server_subject(), opts).await;
    wait_published(&k8s, &server, "the bundle published at start-up").await;
    assert_eq!(pem_certs(&server.bundle_pem()).len(), 1);

    // A new CA is prepared: the bundle grows, and every object follows.
    server.cli_ok(&["localauthority", "x509", "prepare"]);
    wait_published(&k8s, &server, "the bundle after a CA preparation").await;
    assert_eq!(pem_certs(&server.bundle_pem()).len(), 2);

    // A labelled APIService created while the server runs gets the bundle too, without
    // waiting for a bundle change.
    k8s.apply(API_SERVICE);
    let d = Deadline::new("the APIService gets the bundle", 60);
    loop {
        let ca = k8s.jsonpath(
            &["apiservice", "v1.spire-test.example.org"],
            "{.spec.caBundle}",
        );
        let ca = base64::engine::general_purpose::STANDARD
            .decode(ca.trim())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if pem_certs(&ca) == pem_certs(&server.bundle_pem()) {
            break;
        }
        d.tick(tail(&server.log(), 1500)).await;
    }
}

const API_SERVICE: &str = r#"apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1.spire-test.example.org
  labels: {"spiffe.io/apiservice": "true"}
spec:
  group: spire-test.example.org
  version: v1
  groupPriorityMinimum: 1000
  versionPriority: 15
  service: {name: nothing, namespace: spire, port: 443}
"#;

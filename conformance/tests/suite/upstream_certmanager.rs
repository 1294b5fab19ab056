//! UpstreamAuthority `cert-manager` against a real kube-apiserver: the scenario installs a
//! `CertificateRequest` CRD of its own (group `cert-manager.io`, version `v1`, with a status
//! subresource, as cert-manager's) and plays the issuer: it signs each request's CSR with a
//! test root and writes `certificate`, `ca` and `Ready=True` into the status, as a
//! cert-manager issuer does. Reference SPIRE has the same plugin, so every pairing runs the
//! same assertions, including the request object both servers create.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use spire_testsupport::ca::{TestCa, pem_body};

use crate::support::k8s::Cluster;
use crate::support::{
    AgentOpts, Scenario, ServerOpts, agent_subject, check_svid_json, id, join_token_pair, pki,
    server_subject, uid_selector, wait_until,
};

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: certificaterequests.cert-manager.io
spec:
  group: cert-manager.io
  scope: Namespaced
  names:
    kind: CertificateRequest
    listKind: CertificateRequestList
    plural: certificaterequests
    singular: certificaterequest
  versions:
    - name: v1
      served: true
      storage: true
      subresources:
        status: {}
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#;

/// Signs every request without a certificate yet; records each request's spec and labels.
fn issue_pending(k8s: &Cluster, ca: &TestCa, seen: &mut Vec<serde_json::Value>) {
    let out = k8s.kubectl(&["get", "certificaterequests", "-n", "sandbox", "-o", "json"]);
    if !out.ok() {
        return;
    }
    let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    for cr in list["items"].as_array().into_iter().flatten() {
        if cr["status"]["certificate"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
        {
            continue;
        }
        let name = cr["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        seen.push(cr.clone());
        let pem = base64::engine::general_purpose::STANDARD
            .decode(cr["spec"]["request"].as_str().unwrap_or_default())
            .unwrap_or_default();
        let der = pem_body(&String::from_utf8_lossy(&pem)).unwrap_or_default();
        let cert = ca
            .sign_ca_csr(&der, std::time::Duration::from_secs(86400))
            .expect("the test issuer signs the CSR");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let status = serde_json::json!({"status": {
            "certificate": b64(&cert),
            "ca": b64(&ca.pem),
            "conditions": [{"type": "Ready", "status": "True", "reason": "Issued", "message": "signed by the test issuer"}],
        }});
        k8s.kubectl_ok(&[
            "patch",
            "certificaterequest",
            &name,
            "-n",
            "sandbox",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a conformance scenario: conformance/run.sh runs it for each pairing"]
async fn issuer_signs_the_ca() {
    let sc = Scenario::new("upstream_certmanager::issuer_signs_the_ca");
    let Some(k8s) = Cluster::start(&sc) else {
        return;
    };
    let k8s = Arc::new(k8s);
    k8s.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: sandbox}\n");
    k8s.apply(CRD);
    wait_until("the CertificateRequest CRD to serve", 60, || {
        let out = k8s.kubectl(&["get", "certificaterequests", "-n", "sandbox"]);
        out.ok().then_some(()).ok_or(out.stderr)
    })
    .await;
    let ca = Arc::new(TestCa::new("cert-manager test issuer").expect("test CA"));

    // The issuer runs beside the server until the scenario ends.
    let stop = Arc::new(AtomicBool::new(false));
    let issuer = {
        let (stop, ca, k8s) = (stop.clone(), ca.clone(), k8s.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                issue_pending(&k8s, &ca, &mut seen);
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            seen
        })
    };

    let plugin = format!(
        "UpstreamAuthority \"cert-manager\" {{\n        plugin_data {{\n            issuer_name = \"spire-ca\"\n            namespace = \"sandbox\"\n            kube_config_file = \"{}\"\n        }}\n    }}",
        k8s.kubeconfig.display()
    );
    let (server, agent, agent_id) = join_token_pair(
        &sc,
        server_subject(),
        agent_subject(),
        ServerOpts {
            extra_plugins: plugin,
            ..Default::default()
        },
        AgentOpts::default(),
    )
    .await;
    assert_eq!(pki::pem_certs(&server.bundle_pem()), vec![ca.der.clone()]);
    let workload = id("/workload");
    server.workload_entry(&agent_id, &workload, &uid_selector());
    let svid = agent.wait_x509(&workload, 60).await;
    check_svid_json(&svid, &workload);
    let chain = pki::split_der(&pki::b64(svid["x509_svid"].as_str().unwrap_or_default()));
    assert_eq!(chain.len(), 2, "leaf and the issuer-signed CA");
    assert_eq!(pki::facts(&chain[1]).akid, pki::facts(&ca.der).skid);

    // After the mint the server deletes the issued (Ready) request.
    wait_until("the issued CertificateRequest to be cleaned up", 60, || {
        let out = k8s.kubectl_ok(&["get", "certificaterequests", "-n", "sandbox", "-o", "name"]);
        out.trim().is_empty().then_some(()).ok_or(out)
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let seen = issuer.join().expect("issuer thread");
    let cr = seen
        .first()
        .expect("the server created a CertificateRequest");
    assert!(
        cr["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with("spiffe-ca-"),
        "{cr}"
    );
    assert_eq!(
        cr["metadata"]["labels"],
        serde_json::json!({"cert-manager.spiffe.io/trust-domain": "example.org"})
    );
    let spec = &cr["spec"];
    assert_eq!(
        spec["issuerRef"],
        serde_json::json!({"name": "spire-ca", "kind": "Issuer", "group": "cert-manager.io"})
    );
    assert_eq!(spec["isCA"], true);
    assert_eq!(spec["usages"], serde_json::json!(["cert sign", "crl sign"]));
    assert_eq!(spec["duration"], "24h0m0s");
}

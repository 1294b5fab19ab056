//! Bundle plugin unit tests: configuration rules, the patches written and the formats (the
//! writes themselves run against a real API server in the conformance suite).

use super::*;

fn cert_der() -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().der().to_vec()
}

fn bundle() -> PluginBundle {
    let key = spiffe_core::PrivateKey::generate(spiffe_core::KeyType::EcP256).unwrap();
    PluginBundle {
        trust_domain: "example.org".into(),
        x509_authorities: vec![spire_plugin::X509Authority {
            der: cert_der(),
            tainted: false,
        }],
        jwt_authorities: vec![spire_plugin::JwtKey {
            public_key: key.public_key().spki_der().to_vec(),
            key_id: "kid-1".into(),
            expires_at: 0,
            tainted: false,
        }],
        refresh_hint: 300,
        sequence_number: 7,
    }
}

/// A kubeconfig naming a server that is never dialed by these tests.
fn kubeconfig(dir: &std::path::Path) -> String {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\ncontexts:\n- name: x\n  context: {cluster: c}\ncurrent-context: x\n",
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn notifier_configuration_rules() {
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path());
    let n = K8sBundleNotifier::new(&NotifierConfig {
        kube_config_file_path: kc.clone(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(n.targets.len(), 1);
    assert_eq!(n.targets[0].cluster.namespace, "spire");
    assert_eq!(n.targets[0].cluster.config_map, "spire-bundle");
    assert_eq!(n.targets[0].cluster.config_map_key, "bundle.crt");

    let listed_only = NotifierConfig {
        clusters: vec![NotifierCluster {
            kube_config_file_path: kc.clone(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        K8sBundleNotifier::new(&listed_only).unwrap().targets.len(),
        1
    );
    let missing = NotifierConfig {
        clusters: vec![NotifierCluster::default()],
        ..Default::default()
    };
    assert_eq!(
        K8sBundleNotifier::new(&missing).unwrap_err(),
        "cluster configuration is missing kube_config_file_path"
    );
    // The clients are made when configured, so a bad kubeconfig is a start-up error.
    let bad = dir.path().join("nope");
    let err = K8sBundleNotifier::new(&NotifierConfig {
        kube_config_file_path: bad.display().to_string(),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "unable to create new kubeClients: unable to create client config: stat {}: no such file or directory",
            bad.display()
        )
    );
}

#[test]
fn patches_carry_the_resource_version_and_skip_up_to_date_objects() {
    let cluster = with_defaults(NotifierCluster::default());
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let cm = json!({"metadata": {"name": "spire-bundle", "resourceVersion": "41"}});
    assert_eq!(
        patch_for(Kind::ConfigMap, &cluster, &cm, pem).unwrap(),
        json!({"metadata": {"resourceVersion": "41"}, "data": {"bundle.crt": pem}})
    );
    let hook = json!({
        "metadata": {"resourceVersion": "9"},
        "webhooks": [{"name": "h", "sideEffects": "None", "admissionReviewVersions": ["v1"], "clientConfig": {"url": "https://x"}}]
    });
    let patch = patch_for(Kind::ValidatingWebhook, &cluster, &hook, pem).unwrap();
    assert_eq!(patch["webhooks"][0]["clientConfig"]["caBundle"], b64(pem));
    assert_eq!(patch["webhooks"][0]["name"], "h");
    let mut done = hook.clone();
    done["webhooks"][0]["clientConfig"]["caBundle"] = json!(b64(pem));
    assert!(patch_for(Kind::ValidatingWebhook, &cluster, &done, pem).is_none());
    let api = json!({"metadata": {"resourceVersion": "3"}, "spec": {"caBundle": b64(pem), "groupPriorityMinimum": 1000}});
    assert!(patch_for(Kind::ApiService, &cluster, &api, pem).is_none());
}

#[test]
fn publisher_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path());
    let mk = |c: PublisherCluster| {
        let mut clusters = BTreeMap::new();
        clusters.insert("c1".to_string(), c);
        K8sConfigMapPublisher::new(&PublisherConfig { clusters }).map(|_| ())
    };
    let full = PublisherCluster {
        format: "spiffe".into(),
        namespace: "spire".into(),
        configmap_name: "b".into(),
        configmap_key: "k".into(),
        kubeconfig_path: kc,
        ..Default::default()
    };
    assert!(mk(full.clone()).is_ok());
    assert!(
        mk(PublisherCluster {
            kubeconfig_path: "/nonexistent/kubeconfig".into(),
            ..full.clone()
        })
        .unwrap_err()
        .starts_with(
            "failed to create Kubernetes client for cluster \"c1\": error getting kubeconfig: unable to create client config: stat /nonexistent/kubeconfig"
        )
    );
    assert_eq!(
        mk(PublisherCluster {
            format: String::new(),
            ..full.clone()
        })
        .unwrap_err(),
        "missing bundle format in cluster \"c1\""
    );
    assert_eq!(
        mk(PublisherCluster {
            namespace: String::new(),
            ..full.clone()
        })
        .unwrap_err(),
        "missing namespace in cluster \"c1\""
    );
    assert_eq!(
        mk(PublisherCluster {
            format: "der".into(),
            ..full.clone()
        })
        .unwrap_err(),
        "could not parse bundle format from cluster \"c1\": unknown bundle format: \"der\""
    );
    assert!(
        mk(PublisherCluster {
            refresh_hint: "often".into(),
            ..full
        })
        .unwrap_err()
        .starts_with("could not parse refresh_hint from cluster \"c1\"")
    );
}

#[test]
fn formats() {
    let b = bundle();
    let pem = Format::Pem.render(&b, 0).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let spiffe: Value = serde_json::from_str(&Format::Spiffe.render(&b, 0).unwrap()).unwrap();
    assert_eq!(spiffe["spiffe_sequence"], 7);
    assert_eq!(spiffe["spiffe_refresh_hint"], 300);
    assert_eq!(spiffe["keys"][0]["use"], "x509-svid");
    assert_eq!(spiffe["keys"][1]["use"], "jwt-svid");
    assert_eq!(spiffe["keys"][1]["kid"], "kid-1");
    let hinted: Value = serde_json::from_str(&Format::Spiffe.render(&b, 60).unwrap()).unwrap();
    assert_eq!(hinted["spiffe_refresh_hint"], 60);
    let jwks: Value = serde_json::from_str(&Format::Jwks.render(&b, 0).unwrap()).unwrap();
    assert!(jwks["keys"][0]["use"].is_null());
    assert!(jwks["keys"][0]["x5c"].is_array());
    assert!(jwks.get("spiffe_sequence").is_none());

    let mut broken = bundle();
    broken.x509_authorities[0].der = vec![1, 2, 3];
    assert!(
        Format::Spiffe
            .render(&broken, 0)
            .unwrap_err()
            .starts_with("could not convert bundle to spiffe format: failed to convert bundle: unable to parse root CA 0")
    );
}

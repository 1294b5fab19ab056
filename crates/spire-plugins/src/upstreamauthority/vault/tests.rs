//! The `vault` UpstreamAuthority against spire-testsupport's fake Vault (the HTTP endpoints
//! SPIRE's plugin calls, shaped as Vault's API documentation describes them).

use super::*;
use spiffe_core::keys::KeyType;
use spiffe_core::{PrivateKey, TrustDomain};
use spire_pki::Subject;
use spire_plugin::{LocalSigner, X509Authority as PluginAuthority};
use spire_testsupport::vault::{FakeVault, VaultSetup};

#[derive(Debug)]
struct Ignore;

impl UpstreamUpdates for Ignore {
    fn x509_roots(&self, _roots: Vec<PluginAuthority>) {}
    fn jwt_keys(&self, _keys: Vec<JwtKey>) {}
}

fn no_env() -> EnvFn {
    Arc::new(|_| None)
}

fn clock(at: Arc<parking_lot::Mutex<SystemTime>>) -> NowFn {
    Arc::new(move || *at.lock())
}

fn csr() -> Vec<u8> {
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let signer = Arc::new(LocalSigner::new("x509-CA-A", key));
    let td = TrustDomain::new("example.org").unwrap();
    spire_pki::make_ca_csr(signer, &td, &Subject::default_ca(), &[]).unwrap()
}

fn token_config(addr: &str, token: &str) -> Config {
    Config {
        vault_addr: addr.into(),
        token_auth: Some(TokenAuth {
            token: token.into(),
        }),
        ..Config::default()
    }
}

#[tokio::test]
async fn token_auth_signs_the_ca_as_spire_asks_vault_to() {
    let vault = FakeVault::start(VaultSetup::default()).await.unwrap();
    let now = Arc::new(parking_lot::Mutex::new(SystemTime::now()));
    let plugin = VaultUpstreamAuthority::new(
        &Config {
            namespace: "team-a".into(),
            ..token_config(&vault.addr, "s.root-token")
        },
        no_env(),
        clock(now),
    )
    .unwrap();
    let got = plugin
        .mint_x509_ca(&csr(), 7200, Arc::new(Ignore))
        .await
        .unwrap();
    assert_eq!(got.upstream_x509_roots, vec![vault.root_der.clone()]);
    assert_eq!(
        got.x509_ca_chain.len(),
        1,
        "the root is not part of the chain"
    );
    spiffe_core::x509svid::verify_x509_path(
        &got.x509_ca_chain[0],
        &[],
        &got.upstream_x509_roots,
        SystemTime::now(),
    )
    .unwrap();

    let seen = vault.seen();
    let paths: Vec<(&str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("GET", "/v1/auth/token/lookup-self"),
            ("PUT", "/v1/pki/root/sign-intermediate")
        ]
    );
    let sign = &seen[1];
    assert_eq!(sign.headers["x-vault-token"], "s.root-token");
    assert_eq!(sign.headers["x-vault-namespace"], "team-a");
    assert_eq!(sign.body["common_name"], "");
    assert_eq!(sign.body["organization"], "SPIFFE");
    assert_eq!(sign.body["country"], "US");
    assert_eq!(sign.body["uri_sans"], "spiffe://example.org");
    assert_eq!(sign.body["ttl"], "7200");
    assert!(
        sign.body["csr"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE REQUEST-----\n")
    );

    // The token is kept: a second mint signs without another lookup.
    plugin
        .mint_x509_ca(&csr(), 0, Arc::new(Ignore))
        .await
        .unwrap();
    let seen = vault.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].body["ttl"], "", "no preferred TTL: Vault's default");
}

#[tokio::test]
async fn approle_logs_in_then_renews_at_two_thirds_of_the_lease() {
    let vault = FakeVault::start(VaultSetup {
        token: "s.approle-token".into(),
        lease_secs: 300,
        renewable: true,
        ..VaultSetup::default()
    })
    .await
    .unwrap();
    let now = Arc::new(parking_lot::Mutex::new(SystemTime::now()));
    let config = Config {
        vault_addr: vault.addr.clone(),
        pki_mount_point: String::new(),
        approle_auth: Some(AppRoleAuth {
            approle_auth_mount_point: String::new(),
            approle_id: "from-file".into(),
            approle_secret_id: "secret-id".into(),
        }),
        ..Config::default()
    };
    // VAULT_APPROLE_ID wins over the file, as in SPIRE.
    let env: EnvFn = Arc::new(|k| (k == "VAULT_APPROLE_ID").then(|| "role-id".to_string()));
    let plugin = VaultUpstreamAuthority::new(&config, env, clock(now.clone())).unwrap();
    plugin
        .mint_x509_ca(&csr(), 0, Arc::new(Ignore))
        .await
        .unwrap();
    let seen = vault.seen();
    assert_eq!(seen[0].path, "/v1/auth/approle/login");
    assert_eq!(seen[0].body["role_id"], "role-id");
    assert!(!seen[0].headers.contains_key("x-vault-token"));
    assert_eq!(seen[1].headers["x-vault-token"], "s.approle-token");

    *now.lock() += Duration::from_secs(201);
    plugin
        .mint_x509_ca(&csr(), 0, Arc::new(Ignore))
        .await
        .unwrap();
    let paths: Vec<String> = vault.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        paths[2..],
        [
            "/v1/auth/token/renew-self".to_string(),
            "/v1/pki/root/sign-intermediate".to_string()
        ]
    );

    // Past the (renewed) lease entirely: a fresh login.
    *now.lock() += Duration::from_secs(301);
    plugin
        .mint_x509_ca(&csr(), 0, Arc::new(Ignore))
        .await
        .unwrap();
    let paths: Vec<String> = vault.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths[4], "/v1/auth/approle/login");
}

#[tokio::test]
async fn refusals_carry_vaults_errors() {
    let vault = FakeVault::start(VaultSetup::default()).await.unwrap();
    let now = Arc::new(parking_lot::Mutex::new(SystemTime::now()));
    let plugin = VaultUpstreamAuthority::new(
        &token_config(&vault.addr, "wrong"),
        no_env(),
        clock(now.clone()),
    )
    .unwrap();
    let err = plugin
        .mint_x509_ca(&csr(), 0, Arc::new(Ignore))
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::Internal);
    assert!(
        err.message.starts_with("failed to prepare authenticated client: token lookup failed: Error making API request.\n\nURL: GET "),
        "{}",
        err.message
    );
    assert!(
        err.message
            .ends_with("Code: 403. Errors:\n\n* permission denied"),
        "{}",
        err.message
    );

    let config = Config {
        approle_auth: Some(AppRoleAuth {
            approle_id: "role-id".into(),
            approle_secret_id: "bad".into(),
            ..AppRoleAuth::default()
        }),
        vault_addr: vault.addr.clone(),
        ..Config::default()
    };
    let plugin = VaultUpstreamAuthority::new(&config, no_env(), clock(now)).unwrap();
    let err = plugin
        .mint_x509_ca(&csr(), 0, Arc::new(Ignore))
        .await
        .unwrap_err();
    assert!(
        err.message
            .contains("authentication failed auth/approle/login: "),
        "{}",
        err.message
    );
    assert!(
        !err.message.contains("bad"),
        "no secret in errors: {}",
        err.message
    );
}

#[test]
fn configurations_are_checked_as_spire_checks_them() {
    let now: NowFn = Arc::new(SystemTime::now);
    let cases: Vec<(Config, &str)> = vec![
        (
            Config::default(),
            "must be configured one of these authentication method 'Token, Client Certificate, AppRole or Kubernetes",
        ),
        (
            Config {
                token_auth: Some(TokenAuth::default()),
                approle_auth: Some(AppRoleAuth::default()),
                ..Config::default()
            },
            "only one authentication method can be configured",
        ),
        (
            Config {
                k8s_auth: Some(K8sAuth {
                    token_path: "/t".into(),
                    ..K8sAuth::default()
                }),
                ..Config::default()
            },
            "k8s_auth_role_name is required",
        ),
        (
            Config {
                k8s_auth: Some(K8sAuth {
                    k8s_auth_role_name: "r".into(),
                    ..K8sAuth::default()
                }),
                ..Config::default()
            },
            "token_path is required",
        ),
        (
            Config {
                cert_auth: Some(CertAuth {
                    client_cert_path: "/c".into(),
                    ..CertAuth::default()
                }),
                ..Config::default()
            },
            "both client cert and client key are required",
        ),
    ];
    for (config, want) in cases {
        let err = VaultUpstreamAuthority::new(&config, no_env(), now.clone()).unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument);
        assert_eq!(err.message, want);
    }
}

#[test]
fn sign_responses_are_read_as_spire_reads_them() {
    let pem = |cn: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.self_signed(&key).unwrap().pem()
    };
    let (leaf, inter, root) = (pem("ca"), pem("intermediate"), pem("root"));
    let got = sign_response(&json!({"data": {
        "certificate": leaf, "issuing_ca": inter, "ca_chain": [inter, root]
    }}))
    .unwrap();
    let der = |p: &str| one_pem(p, "x").unwrap();
    assert_eq!(got.upstream_x509_roots, vec![der(&root)]);
    assert_eq!(got.x509_ca_chain, vec![der(&leaf), der(&inter)]);

    let got = sign_response(&json!({"data": {"certificate": leaf, "issuing_ca": root}})).unwrap();
    assert_eq!(got.upstream_x509_roots, vec![der(&root)]);
    assert_eq!(got.x509_ca_chain, vec![der(&leaf)]);

    let err = sign_response(&json!({"data": {"issuing_ca": root}})).unwrap_err();
    assert_eq!(
        err.message,
        "request is successful, but certificate data is empty"
    );
    let err = sign_response(&json!({"data": {"certificate": leaf}})).unwrap_err();
    assert_eq!(
        err.message,
        "request is successful, but issuing_ca data is empty"
    );
    let err =
        sign_response(&json!({"data": {"certificate": "junk", "issuing_ca": root}})).unwrap_err();
    assert!(
        err.message.starts_with("failed to parse certificate"),
        "{}",
        err.message
    );
}

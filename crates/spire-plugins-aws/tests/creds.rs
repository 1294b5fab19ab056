//! The server half's default credential chain: environment, shared profiles (static keys,
//! `source_profile` + `role_arn`, `credential_process`, `credential_source`, web identity),
//! `AWS_WEB_IDENTITY_TOKEN_FILE`, the container endpoint and the instance role from IMDS —
//! the last two against the loopback IMDS fixture speaking IMDS's and ECS's wire formats.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spire_plugins_aws::api::{EnvFn, NowFn};
use spire_plugins_aws::creds::{Chain, Credentials, Sts};
use spire_plugins_aws::testsupport::{ImdsContent, ImdsMode, ImdsServer, TestCa, document};

#[derive(Default)]
struct FakeSts {
    calls: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Sts for FakeSts {
    async fn assume_role(
        &self,
        with: &Credentials,
        region: &str,
        role_arn: &str,
        _session: &str,
        external_id: Option<&str>,
    ) -> Result<Credentials, String> {
        self.calls.lock().unwrap().push(format!(
            "assume {role_arn} with {} in {region} ext={external_id:?}",
            with.key
        ));
        Ok(Credentials {
            key: format!("ASSUMED-{}", role_arn.rsplit('/').next().unwrap()),
            secret: "s".into(),
            token: Some("t".into()),
            expires: Some(4_000_000_000),
            source: "assumed role",
        })
    }

    async fn assume_role_with_web_identity(
        &self,
        region: &str,
        role_arn: &str,
        session: &str,
        token: &str,
    ) -> Result<Credentials, String> {
        self.calls.lock().unwrap().push(format!(
            "web {role_arn} session={session} token={token} in {region}"
        ));
        Ok(Credentials {
            key: "WEB".into(),
            secret: "s".into(),
            token: Some("t".into()),
            expires: Some(4_000_000_000),
            source: "web identity",
        })
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    vars: HashMap<String, String>,
    now: Arc<AtomicU64>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut vars = HashMap::new();
        // No real home: nothing of the machine's ~/.aws is read.
        vars.insert("HOME".into(), dir.path().display().to_string());
        // No real instance metadata either.
        vars.insert(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
            "http://127.0.0.1:9".into(),
        );
        Self {
            dir,
            vars,
            now: Arc::new(AtomicU64::new(1_700_000_000)),
        }
    }

    fn set(&mut self, k: &str, v: &str) -> &mut Self {
        self.vars.insert(k.into(), v.into());
        self
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn chain(&self) -> Chain {
        let vars = self.vars.clone();
        let env: EnvFn = Arc::new(move |k| vars.get(k).cloned());
        let t = self.now.clone();
        let now: NowFn =
            Arc::new(move || UNIX_EPOCH + Duration::from_secs(t.load(Ordering::SeqCst)));
        Chain::new(env, now, Duration::from_secs(2))
    }
}

#[tokio::test]
async fn environment_keys_come_first_unless_a_profile_is_named() {
    let mut f = Fixture::new();
    f.set("AWS_ACCESS_KEY_ID", "ENVKEY")
        .set("AWS_SECRET_ACCESS_KEY", "envsecret")
        .set("AWS_SESSION_TOKEN", "envtoken");
    f.file(
        ".aws/credentials",
        "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = filesecret\n[other]\naws_access_key_id = OTHERKEY\naws_secret_access_key = x\n",
    );
    let sts = FakeSts::default();
    let c = f.chain().get(&sts, "us-east-1").await.unwrap();
    assert_eq!(
        (c.key.as_str(), c.token.as_deref()),
        ("ENVKEY", Some("envtoken"))
    );
    f.set("AWS_PROFILE", "other");
    let c = f.chain().get(&sts, "us-east-1").await.unwrap();
    assert_eq!(c.key, "OTHERKEY");
    f.set("AWS_PROFILE", "nope");
    let e = f.chain().get(&sts, "us-east-1").await.unwrap_err();
    assert_eq!(
        e,
        "failed to refresh cached credentials, failed to get shared config profile, nope"
    );
}

#[tokio::test]
async fn profiles_assume_roles_from_their_source() {
    let mut f = Fixture::new();
    let creds = f.file(
        "creds",
        "[base]\naws_access_key_id = BASEKEY\naws_secret_access_key = b\n",
    );
    let config = f.file(
        "config",
        "[profile app]\nrole_arn = arn:aws:iam::111:role/app\nsource_profile = base\nexternal_id = ext-1\n[profile loop]\nrole_arn = arn:aws:iam::111:role/x\nsource_profile = loop2\n[profile loop2]\nrole_arn = arn:aws:iam::111:role/y\nsource_profile = loop\n[profile sso]\nsso_start_url = https://x\nsso_role_name = r\n",
    );
    f.set("AWS_SHARED_CREDENTIALS_FILE", &creds)
        .set("AWS_CONFIG_FILE", &config)
        .set("AWS_PROFILE", "app");
    let sts = FakeSts::default();
    let c = f.chain().get(&sts, "eu-west-1").await.unwrap();
    assert_eq!(c.key, "ASSUMED-app");
    assert_eq!(
        *sts.calls.lock().unwrap(),
        ["assume arn:aws:iam::111:role/app with BASEKEY in eu-west-1 ext=Some(\"ext-1\")"]
    );
    f.set("AWS_PROFILE", "loop");
    let e = f.chain().get(&sts, "eu-west-1").await.unwrap_err();
    assert!(e.contains("source_profile chain loops"), "{e}");
    f.set("AWS_PROFILE", "sso");
    let e = f.chain().get(&sts, "eu-west-1").await.unwrap_err();
    assert!(e.contains("IAM Identity Center"), "{e}");
}

#[tokio::test]
async fn credential_process_output_is_read_and_checked() {
    let mut f = Fixture::new();
    let good = f.file(
        "good.sh",
        "echo '{\"Version\": 1, \"AccessKeyId\": \"PROCKEY\", \"SecretAccessKey\": \"p\", \"SessionToken\": \"pt\", \"Expiration\": \"2030-01-01T00:00:00Z\"}'\n",
    );
    let bad = f.file("bad.sh", "echo '{\"Version\": 2}'\n");
    let fail = f.file("fail.sh", "echo nope >&2; exit 3\n");
    let config = f.file(
        "config",
        &format!(
            "[default]\ncredential_process = sh {good}\n[profile bad]\ncredential_process = sh {bad}\n[profile fail]\ncredential_process = sh {fail}\n"
        ),
    );
    f.set("AWS_CONFIG_FILE", &config);
    let sts = FakeSts::default();
    let c = f.chain().get(&sts, "us-east-1").await.unwrap();
    assert_eq!(c.key, "PROCKEY");
    assert_eq!(c.token.as_deref(), Some("pt"));
    assert_eq!(c.expires, Some(1_893_456_000));
    f.set("AWS_PROFILE", "bad");
    let e = f.chain().get(&sts, "us-east-1").await.unwrap_err();
    assert!(e.contains("Version must be 1"), "{e}");
    f.set("AWS_PROFILE", "fail");
    let e = f.chain().get(&sts, "us-east-1").await.unwrap_err();
    assert!(
        e.contains("error in credential_process") && e.contains("nope"),
        "{e}"
    );
}

#[tokio::test]
async fn web_identity_from_the_environment_or_a_profile() {
    let mut f = Fixture::new();
    let token = f.file("token", "eyJhbGciOi.fixture.jwt\n");
    f.set("AWS_WEB_IDENTITY_TOKEN_FILE", &token)
        .set("AWS_ROLE_ARN", "arn:aws:iam::222:role/irsa")
        .set("AWS_ROLE_SESSION_NAME", "spire-server");
    let sts = FakeSts::default();
    let c = f.chain().get(&sts, "us-west-2").await.unwrap();
    assert_eq!(c.key, "WEB");
    assert_eq!(
        *sts.calls.lock().unwrap(),
        [
            "web arn:aws:iam::222:role/irsa session=spire-server token=eyJhbGciOi.fixture.jwt in us-west-2"
        ]
    );
    // Without the role: a clear error.
    f.vars.remove("AWS_ROLE_ARN");
    let e = f.chain().get(&sts, "us-west-2").await.unwrap_err();
    assert!(e.contains("AWS_ROLE_ARN"), "{e}");
    // From a profile.
    f.vars.remove("AWS_WEB_IDENTITY_TOKEN_FILE");
    let config = f.file(
        "config",
        &format!(
            "[profile w]\nweb_identity_token_file = {token}\nrole_arn = arn:aws:iam::222:role/p\n"
        ),
    );
    f.set("AWS_CONFIG_FILE", &config).set("AWS_PROFILE", "w");
    let sts = FakeSts::default();
    f.chain().get(&sts, "us-west-2").await.unwrap();
    assert!(
        sts.calls.lock().unwrap()[0].starts_with("web arn:aws:iam::222:role/p session=aws-go-sdk-")
    );
}

fn creds_json(key: &str, expiration: &str) -> String {
    format!(
        "{{\"Code\": \"Success\", \"LastUpdated\": \"2026-12-05T00:00:00Z\", \"Type\": \"AWS-HMAC\", \"AccessKeyId\": \"{key}\", \"SecretAccessKey\": \"sec\", \"Token\": \"tok\", \"Expiration\": \"{expiration}\"}}"
    )
}

#[tokio::test]
async fn container_endpoint_and_instance_role() {
    let ca = TestCa::new("test").unwrap();
    let mut content = ImdsContent::signed(
        &ca,
        document("1", "us-east-1", "i-1", "us-east-1a", "ami-1"),
    )
    .unwrap();
    content.paths = vec![
        (
            "/latest/meta-data/iam/security-credentials/".into(),
            None,
            "node-role\n".into(),
        ),
        (
            "/latest/meta-data/iam/security-credentials/node-role".into(),
            None,
            creds_json("IMDSKEY", "2023-11-14T23:00:00Z"),
        ),
        (
            "/v2/credentials/abc".into(),
            Some("Bearer pod-token".into()),
            creds_json("PODKEY", "2030-01-01T00:00:00Z"),
        ),
    ];
    let imds = ImdsServer::start(content.clone(), ImdsMode::V2)
        .await
        .unwrap();
    // The container endpoint takes no IMDS token: a fixture that does not ask for one.
    let pods = ImdsServer::start(content, ImdsMode::V1).await.unwrap();

    // Nothing else configured: the instance's role, through IMDSv2.
    let mut f = Fixture::new();
    f.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint());
    let sts = FakeSts::default();
    let chain = f.chain();
    let c = chain.get(&sts, "us-east-1").await.unwrap();
    assert_eq!(
        (c.key.as_str(), c.token.as_deref()),
        ("IMDSKEY", Some("tok"))
    );
    // Cached while fresh (expires 2023-11-14T23:00:00Z = 1_700_002_800)...
    let served = imds.requests.load(Ordering::SeqCst);
    chain.get(&sts, "us-east-1").await.unwrap();
    assert_eq!(imds.requests.load(Ordering::SeqCst), served);
    // ...and renewed within five minutes of expiry.
    f.now.store(1_700_002_600, Ordering::SeqCst);
    chain.get(&sts, "us-east-1").await.unwrap();
    assert!(imds.requests.load(Ordering::SeqCst) > served);
    f.set("AWS_EC2_METADATA_DISABLED", "true");
    let e = f.chain().get(&sts, "us-east-1").await.unwrap_err();
    assert!(e.contains("no EC2 IMDS role found"), "{e}");

    // A container endpoint (EKS Pod Identity style) with its authorization token file.
    let mut f = Fixture::new();
    let tok = f.file("pod-token", "Bearer pod-token\n");
    f.set(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        &format!("{}/v2/credentials/abc", pods.endpoint()),
    )
    .set("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &tok);
    let c = f.chain().get(&sts, "us-east-1").await.unwrap();
    assert_eq!(c.key, "PODKEY");
    f.vars.remove("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    f.set("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer wrong");
    let e = f.chain().get(&sts, "us-east-1").await.unwrap_err();
    assert!(e.contains("StatusCode: 403"), "{e}");
    f.set(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "http://creds.example.com/v2/credentials/abc",
    );
    let e = f.chain().get(&sts, "us-east-1").await.unwrap_err();
    assert!(e.contains("plain HTTP is only allowed"), "{e}");

    // A profile whose credential_source is the instance, with a role on top.
    let mut f = Fixture::new();
    let config = f.file(
        "config",
        "[default]\ncredential_source = Ec2InstanceMetadata\nrole_arn = arn:aws:iam::333:role/server\n",
    );
    f.set("AWS_CONFIG_FILE", &config)
        .set("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint());
    let sts = FakeSts::default();
    let c = f.chain().get(&sts, "us-east-1").await.unwrap();
    assert_eq!(c.key, "ASSUMED-server");
    assert_eq!(
        *sts.calls.lock().unwrap(),
        ["assume arn:aws:iam::333:role/server with IMDSKEY in us-east-1 ext=None"]
    );
    let _ = SystemTime::now();
}

//! The AWS credential chain of the server half, resolved as the Go SDK's
//! `config.LoadDefaultConfig` resolves it for SPIRE when `access_key_id` /
//! `secret_access_key` are not configured:
//!
//! 1. `AWS_PROFILE` set: that profile of the shared files (an unknown profile is an error);
//! 2. else `AWS_ACCESS_KEY_ID` (or `AWS_ACCESS_KEY`) with `AWS_SECRET_ACCESS_KEY` (or
//!    `AWS_SECRET_KEY`) and `AWS_SESSION_TOKEN`;
//! 3. else `AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN` (`AWS_ROLE_SESSION_NAME`):
//!    `sts:AssumeRoleWithWebIdentity` (EKS IRSA);
//! 4. else the `default` profile, which falls through to the container endpoint
//!    (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` / `_FULL_URI`, ECS and EKS Pod Identity)
//!    and last to the instance's IAM role from IMDS.
//!
//! A profile (`~/.aws/credentials` and `~/.aws/config`, or `AWS_SHARED_CREDENTIALS_FILE` /
//! `AWS_CONFIG_FILE`) gives static keys, `credential_process`, `web_identity_token_file`,
//! `credential_source` or `source_profile`, and `role_arn` to assume on top. IAM Identity
//! Center (`sso_*`) profiles are refused with a clear error. Temporary credentials are
//! cached until five minutes before they expire; every exchange is bounded by the HTTP
//! client's timeout and `credential_process` by [`PROCESS_TIMEOUT`].

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::api::{EnvFn, NowFn};

/// The bound on a `credential_process` run.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);
/// Temporary credentials are renewed this long before they expire.
pub const EXPIRY_WINDOW: u64 = 300;
/// The largest answer read from a credential endpoint or process.
const MAX_BODY: usize = 64 << 10;
/// ECS's credential endpoint for `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`.
const ECS_HOST: &str = "http://169.254.170.2";
/// How deep `source_profile` chains may go.
const MAX_CHAIN: usize = 8;

/// A set of AWS credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key ID.
    pub key: String,
    /// The secret access key.
    pub secret: String,
    /// The session token of temporary credentials.
    pub token: Option<String>,
    /// Unix seconds at which temporary credentials expire.
    pub expires: Option<u64>,
    /// Where they came from (for logs and errors).
    pub source: &'static str,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("key", &self.key)
            .field("expires", &self.expires)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Static credentials.
    pub fn fixed(key: &str, secret: &str, token: Option<String>, source: &'static str) -> Self {
        Self {
            key: key.to_string(),
            secret: secret.to_string(),
            token: token.filter(|t| !t.is_empty()),
            expires: None,
            source,
        }
    }

    /// Whether they are still good at `now` (with the renewal window).
    pub fn fresh(&self, now: u64) -> bool {
        self.expires.is_none_or(|e| e > now + EXPIRY_WINDOW)
    }
}

/// The SDK's role session name when none is configured: `aws-go-sdk-<Unix nanoseconds>`.
pub fn default_session_name(now: &NowFn) -> String {
    let nanos = now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("aws-go-sdk-{nanos}")
}

/// Calls STS on behalf of the chain (the API client implements it).
#[async_trait::async_trait]
pub trait Sts: Send + Sync {
    /// `sts:AssumeRole` signed with `with`.
    async fn assume_role(
        &self,
        with: &Credentials,
        region: &str,
        role_arn: &str,
        session_name: &str,
        external_id: Option<&str>,
    ) -> Result<Credentials, String>;

    /// `sts:AssumeRoleWithWebIdentity` (unsigned).
    async fn assume_role_with_web_identity(
        &self,
        region: &str,
        role_arn: &str,
        session_name: &str,
        token: &str,
    ) -> Result<Credentials, String>;
}

/// One profile of the shared files, keys lower-cased.
pub type Profile = BTreeMap<String, String>;

/// Parses an INI file of the shared config; `config_file` means section names are
/// `profile <name>` (except `default`).
pub fn parse_ini(text: &str, config_file: bool) -> BTreeMap<String, Profile> {
    let mut out: BTreeMap<String, Profile> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut last_key: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(inner) = trimmed.strip_prefix('[').and_then(|r| r.split(']').next()) {
            let name = inner.trim();
            let name = if config_file {
                match name.strip_prefix("profile ") {
                    Some(n) => Some(n.trim().to_string()),
                    None if name == "default" => Some(name.to_string()),
                    // `[sso-session x]`, `[services x]` and other sections are not profiles.
                    None => None,
                }
            } else {
                Some(name.to_string())
            };
            current = name;
            last_key = None;
            if let Some(n) = &current {
                out.entry(n.clone()).or_default();
            }
            continue;
        }
        let Some(name) = &current else { continue };
        // A continuation line (indented) of a nested block: kept out of the profile's keys.
        if line.starts_with([' ', '\t']) && last_key.is_some() {
            continue;
        }
        if let Some((k, v)) = trimmed.split_once('=') {
            let key = k.trim().to_ascii_lowercase();
            let value = strip_comment(v.trim()).to_string();
            if let Some(p) = out.get_mut(name) {
                p.insert(key.clone(), value);
            }
            last_key = Some(key);
        }
    }
    out
}

/// A value's trailing ` #` / ` ;` comment removed.
fn strip_comment(v: &str) -> &str {
    for (i, c) in v.char_indices() {
        if (c == '#' || c == ';') && v[..i].ends_with([' ', '\t']) {
            return v[..i].trim_end();
        }
    }
    v
}

/// The answer of a container endpoint or `credential_process`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonCreds {
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    secret_access_key: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl JsonCreds {
    fn into_creds(self, source: &'static str, what: &str) -> Result<Credentials, String> {
        if self.access_key_id.is_empty() || self.secret_access_key.is_empty() {
            return Err(format!(
                "{what}: the answer has no AccessKeyId/SecretAccessKey"
            ));
        }
        let expires = match self.expiration.as_deref().filter(|e| !e.is_empty()) {
            Some(e) => Some(
                crate::api::parse_time(e)
                    .and_then(|t| u64::try_from(t).ok())
                    .ok_or_else(|| format!("{what}: invalid Expiration {e:?}"))?,
            ),
            None => None,
        };
        Ok(Credentials {
            key: self.access_key_id,
            secret: self.secret_access_key,
            token: self.token.or(self.session_token).filter(|t| !t.is_empty()),
            expires,
            source,
        })
    }
}

/// The credential chain with its cache.
pub struct Chain {
    env: EnvFn,
    now: NowFn,
    http: spire_http::Client,
    cached: Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").finish_non_exhaustive()
    }
}

/// How a profile yields its base credentials.
enum Base {
    Static(Credentials),
    Process(String),
    WebIdentity { file: String, role: String },
    Environment,
    Container,
    Imds,
}

impl Chain {
    /// A chain reading `env` (and the files it names); exchanges bounded by `timeout`.
    pub fn new(env: EnvFn, now: NowFn, timeout: Duration) -> Self {
        Self {
            env,
            now,
            http: spire_http::Client::new(timeout),
            cached: Mutex::new(None),
        }
    }

    fn var(&self, k: &str) -> Option<String> {
        (self.env)(k).filter(|v| !v.is_empty())
    }

    fn unix_now(&self) -> u64 {
        (self.now)()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The credentials, from the cache while they are fresh.
    pub async fn get(&self, sts: &dyn Sts, region: &str) -> Result<Credentials, String> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && c.fresh(self.unix_now())
        {
            return Ok(c.clone());
        }
        let creds = self
            .resolve(sts, region)
            .await
            .map_err(|e| format!("failed to refresh cached credentials, {e}"))?;
        tracing::debug!(source = creds.source, "Resolved AWS credentials");
        *cached = Some(creds.clone());
        Ok(creds)
    }

    async fn resolve(&self, sts: &dyn Sts, region: &str) -> Result<Credentials, String> {
        if let Some(profile) = self
            .var("AWS_PROFILE")
            .or_else(|| self.var("AWS_DEFAULT_PROFILE"))
        {
            return self.profile_credentials(sts, region, &profile, true).await;
        }
        if let Some(c) = self.env_static() {
            return Ok(c);
        }
        if let Some(file) = self.var("AWS_WEB_IDENTITY_TOKEN_FILE") {
            let role = self.var("AWS_ROLE_ARN").ok_or(
                "web identity token file is set (AWS_WEB_IDENTITY_TOKEN_FILE) but AWS_ROLE_ARN is not",
            )?;
            let session = self.var("AWS_ROLE_SESSION_NAME");
            return self
                .web_identity(sts, region, &file, &role, session.as_deref())
                .await;
        }
        self.profile_credentials(sts, region, "default", false)
            .await
    }

    fn env_static(&self) -> Option<Credentials> {
        let key = self
            .var("AWS_ACCESS_KEY_ID")
            .or_else(|| self.var("AWS_ACCESS_KEY"))?;
        let secret = self
            .var("AWS_SECRET_ACCESS_KEY")
            .or_else(|| self.var("AWS_SECRET_KEY"))?;
        Some(Credentials::fixed(
            &key,
            &secret,
            self.var("AWS_SESSION_TOKEN"),
            "environment",
        ))
    }

    fn home_file(&self, var: &str, rel: &str) -> Option<std::path::PathBuf> {
        if let Some(p) = self.var(var) {
            return Some(p.into());
        }
        self.var("HOME")
            .map(|h| std::path::Path::new(&h).join(".aws").join(rel))
    }

    /// The named profile, the credentials file's keys over the config file's.
    fn load_profile(&self, name: &str) -> Result<Option<Profile>, String> {
        let mut found = None;
        for (var, rel, config) in [
            ("AWS_CONFIG_FILE", "config", true),
            ("AWS_SHARED_CREDENTIALS_FILE", "credentials", false),
        ] {
            let Some(path) = self.home_file(var, rel) else {
                continue;
            };
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(format!(
                        "failed to load shared config file, {}, {e}",
                        path.display()
                    ));
                }
            };
            if let Some(p) = parse_ini(&text, config).remove(name) {
                found.get_or_insert_with(Profile::new).extend(p);
            }
        }
        Ok(found)
    }

    fn base_of(&self, name: &str, p: &Profile) -> Result<Option<Base>, String> {
        let get = |k: &str| p.get(k).filter(|v| !v.is_empty()).cloned();
        if let (Some(key), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key"))
        {
            return Ok(Some(Base::Static(Credentials::fixed(
                &key,
                &secret,
                get("aws_session_token"),
                "shared profile",
            ))));
        }
        if let Some(src) = get("credential_source") {
            return match src.as_str() {
                "Environment" => Ok(Some(Base::Environment)),
                "Ec2InstanceMetadata" => Ok(Some(Base::Imds)),
                "EcsContainer" => Ok(Some(Base::Container)),
                other => Err(format!(
                    "profile {name:?}: invalid credential_source {other:?}, must be one of Environment, Ec2InstanceMetadata or EcsContainer"
                )),
            };
        }
        if let Some(file) = get("web_identity_token_file") {
            let role = get("role_arn").ok_or_else(|| {
                format!("profile {name:?}: web_identity_token_file requires role_arn")
            })?;
            return Ok(Some(Base::WebIdentity { file, role }));
        }
        if p.keys().any(|k| k.starts_with("sso_")) {
            return Err(format!(
                "profile {name:?} uses IAM Identity Center (sso_*), which spire-rs does not resolve; use static keys, a role, web identity or credential_process"
            ));
        }
        if let Some(cmd) = get("credential_process") {
            return Ok(Some(Base::Process(cmd)));
        }
        Ok(None)
    }

    async fn profile_credentials(
        &self,
        sts: &dyn Sts,
        region: &str,
        name: &str,
        explicit: bool,
    ) -> Result<Credentials, String> {
        let mut visited = Vec::new();
        self.profile_chain(sts, region, name, explicit, &mut visited)
            .await
    }

    async fn profile_chain(
        &self,
        sts: &dyn Sts,
        region: &str,
        name: &str,
        explicit: bool,
        visited: &mut Vec<String>,
    ) -> Result<Credentials, String> {
        let profile = match self.load_profile(name)? {
            Some(p) => p,
            None if explicit || !visited.is_empty() => {
                return Err(format!("failed to get shared config profile, {name}"));
            }
            None => Profile::new(),
        };
        let get = |k: &str| profile.get(k).filter(|v| !v.is_empty()).cloned();
        let role = get("role_arn");
        let session = get("role_session_name");
        let external = get("external_id");
        // source_profile: the source's credentials, then this profile's role.
        if let (Some(role), Some(source)) = (&role, get("source_profile")) {
            if visited.contains(&source) || visited.len() >= MAX_CHAIN {
                return Err(format!(
                    "profile {name:?}: source_profile chain loops or is too deep"
                ));
            }
            visited.push(name.to_string());
            let base = if source == name {
                match self.base_of(name, &profile)? {
                    Some(Base::Static(c)) => c,
                    _ => {
                        return Err(format!(
                            "profile {name:?} is its own source_profile but has no static keys"
                        ));
                    }
                }
            } else {
                Box::pin(self.profile_chain(sts, region, &source, true, visited)).await?
            };
            return self
                .assume(
                    sts,
                    &base,
                    region,
                    role,
                    session.as_deref(),
                    external.as_deref(),
                )
                .await;
        }
        let base = match self.base_of(name, &profile)? {
            Some(b) => b,
            None if self.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
                || self.var("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some() =>
            {
                Base::Container
            }
            None => Base::Imds,
        };
        let creds = match base {
            // The token is exchanged for the profile's role itself.
            Base::WebIdentity { file, role } => {
                return self
                    .web_identity(sts, region, &file, &role, session.as_deref())
                    .await;
            }
            Base::Static(c) => c,
            Base::Process(cmd) => self.process(&cmd).await?,
            Base::Environment => self.env_static().ok_or(
                "credential_source Environment: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set",
            )?,
            Base::Container => self.container().await?,
            Base::Imds => self.imds().await?,
        };
        match role {
            Some(role) => {
                self.assume(
                    sts,
                    &creds,
                    region,
                    &role,
                    session.as_deref(),
                    external.as_deref(),
                )
                .await
            }
            None => Ok(creds),
        }
    }

    fn session_name(&self, given: Option<&str>) -> String {
        given.map_or_else(|| default_session_name(&self.now), str::to_string)
    }

    async fn assume(
        &self,
        sts: &dyn Sts,
        with: &Credentials,
        region: &str,
        role: &str,
        session: Option<&str>,
        external: Option<&str>,
    ) -> Result<Credentials, String> {
        sts.assume_role(with, region, role, &self.session_name(session), external)
            .await
    }

    async fn web_identity(
        &self,
        sts: &dyn Sts,
        region: &str,
        file: &str,
        role: &str,
        session: Option<&str>,
    ) -> Result<Credentials, String> {
        let token = std::fs::read_to_string(file).map_err(|e| {
            format!(
                "failed to retrieve jwt from provide source, unable to read file at {file}: {e}"
            )
        })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(format!("the web identity token file {file} is empty"));
        }
        sts.assume_role_with_web_identity(region, role, &self.session_name(session), token)
            .await
    }

    async fn process(&self, cmd: &str) -> Result<Credentials, String> {
        let mut child = tokio::process::Command::new("sh");
        child
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(PROCESS_TIMEOUT, child.output())
            .await
            .map_err(|_| "credential_process timed out".to_string())?
            .map_err(|e| format!("credential_process: error in credential_process, {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "credential_process: error in credential_process, {}, {}",
                out.status,
                err.trim()
            ));
        }
        if out.stdout.len() > MAX_BODY {
            return Err("credential_process: output too large".into());
        }
        let parsed: JsonCreds = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("credential_process: parse failed of process output, {e}"))?;
        if parsed.version != Some(1) {
            return Err(
                "credential_process: invalid version of process output, Version must be 1".into(),
            );
        }
        parsed.into_creds("credential_process", "credential_process")
    }

    async fn container(&self) -> Result<Credentials, String> {
        let url = match (
            self.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
            self.var("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        ) {
            (Some(rel), _) => format!("{ECS_HOST}{rel}"),
            (None, Some(full)) => {
                check_container_host(&full)?;
                full
            }
            (None, None) => {
                return Err("no container credentials endpoint is set".into());
            }
        };
        let what = "operation error ecscreds: GetCredentials";
        let mut req = spire_http::Request::get(&url)
            .map_err(|e| format!("{what}, {e}"))?
            .max_body(MAX_BODY);
        let token = match self.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Some(file) => Some(
                std::fs::read_to_string(&file)
                    .map_err(|e| {
                        format!("{what}, failed to read authorization token from {file}: {e}")
                    })?
                    .trim()
                    .to_string(),
            ),
            None => self.var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        };
        if let Some(t) = token {
            req = req
                .header("authorization", &t)
                .map_err(|e| format!("{what}, invalid authorization token: {e}"))?;
        }
        let resp = self
            .http
            .send(req)
            .await
            .map_err(|e| format!("{what}, request send failed, {e}"))?;
        if !resp.status.is_success() {
            return Err(format!(
                "{what}, https response error StatusCode: {}",
                resp.status.as_u16()
            ));
        }
        let parsed: JsonCreds = serde_json::from_slice(&resp.body)
            .map_err(|e| format!("{what}, failed to decode credentials, {e}"))?;
        parsed.into_creds("container", what)
    }

    async fn imds(&self) -> Result<Credentials, String> {
        if self
            .var("AWS_EC2_METADATA_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Err(
                "no EC2 IMDS role found, EC2 IMDS access disabled (AWS_EC2_METADATA_DISABLED)"
                    .into(),
            );
        }
        let endpoint = self
            .var(crate::imds::ENDPOINT_ENV)
            .unwrap_or_else(|| crate::imds::DEFAULT_ENDPOINT.to_string());
        let mut imds = crate::imds::Imds::with_timeout(&endpoint, self.http.timeout());
        let roles = imds
            .meta_data("iam/security-credentials/")
            .await
            .map_err(|e| format!("no EC2 IMDS role found, {e}"))?;
        let role = roles
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or("no EC2 IMDS role found, the instance has no IAM role")?
            .to_string();
        let body = imds
            .meta_data(&format!("iam/security-credentials/{role}"))
            .await
            .map_err(|e| format!("failed to retrieve credentials, {e}"))?;
        let parsed: JsonCreds = serde_json::from_str(&body)
            .map_err(|e| format!("failed to decode EC2 IMDS role credentials, {e}"))?;
        if let Some(code) = parsed.code.as_deref().filter(|c| *c != "Success") {
            return Err(format!(
                "failed to retrieve credentials, EC2 IMDS role credentials were not available: {code}: {}",
                parsed.message.clone().unwrap_or_default()
            ));
        }
        parsed.into_creds("EC2 instance role", "EC2 IMDS role credentials")
    }
}

/// The SDK's rule for `AWS_CONTAINER_CREDENTIALS_FULL_URI`: HTTPS anywhere, plain HTTP
/// only to loopback or the ECS/EKS credential addresses.
fn check_container_host(full: &str) -> Result<(), String> {
    let url = url::Url::parse(full)
        .map_err(|e| format!("invalid container credentials URI {full:?}: {e}"))?;
    if url.scheme() == "https" {
        return Ok(());
    }
    let allowed = match url.host() {
        Some(url::Host::Ipv4(a)) => {
            a.is_loopback()
                || a == std::net::Ipv4Addr::new(169, 254, 170, 2)
                || a == std::net::Ipv4Addr::new(169, 254, 170, 23)
        }
        Some(url::Host::Ipv6(a)) => {
            a.is_loopback()
                || a == "fd00:ec2::23"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap_or(std::net::Ipv6Addr::LOCALHOST)
        }
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "invalid container credentials URI {full:?}: plain HTTP is only allowed to loopback or the ECS/EKS credential addresses"
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ini_files_as_the_sdk_reads_them() {
        let cfg = "[default]\nregion = us-east-1\n[profile dev] ; comment\nrole_arn = arn:aws:iam::1:role/r # why\nsource_profile=base\n[sso-session s]\nsso_region = x\n[services s]\ns3 =\n  endpoint_url = x\n";
        let p = parse_ini(cfg, true);
        assert_eq!(p["default"]["region"], "us-east-1");
        assert_eq!(p["dev"]["role_arn"], "arn:aws:iam::1:role/r");
        assert_eq!(p["dev"]["source_profile"], "base");
        assert!(!p.contains_key("sso-session s") && !p.contains_key("s"));
        let creds = "[base]\naws_access_key_id = AK\nAWS_SECRET_ACCESS_KEY = SK\n";
        let c = parse_ini(creds, false);
        assert_eq!(c["base"]["aws_secret_access_key"], "SK");
    }

    #[test]
    fn container_hosts_as_the_sdk_allows_them() {
        assert!(check_container_host("http://127.0.0.1:8080/creds").is_ok());
        assert!(check_container_host("http://169.254.170.23/v1/credentials").is_ok());
        assert!(check_container_host("http://[fd00:ec2::23]/v1").is_ok());
        assert!(check_container_host("https://creds.example.com/x").is_ok());
        assert!(check_container_host("http://creds.example.com/x").is_err());
        assert!(check_container_host("not a url").is_err());
    }
}

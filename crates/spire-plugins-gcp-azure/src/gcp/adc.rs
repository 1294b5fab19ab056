//! Application Default Credentials for the Compute API calls of the server half, found as
//! the Go client library finds them: `service_account_file` (SPIRE's option), then
//! `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's well-known file
//! (`$CLOUDSDK_CONFIG/application_default_credentials.json`, by default under
//! `~/.config/gcloud`), then the metadata server of the instance the server runs on
//! (`GCE_METADATA_HOST` or `metadata.google.internal`).
//!
//! A credentials file may be a service account key (JWT bearer grant), a user's refresh
//! token (`authorized_user`), or workload identity federation (`external_account`: a subject
//! token from a file or a URL exchanged at Google's STS, then, when configured, a service
//! account impersonated). Executable-sourced and AWS-sourced external accounts are refused
//! with a clear error. Tokens are reused until five minutes before they expire.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::{EnvFn, NowFn};

/// The scope of the Compute API tokens.
pub(super) const COMPUTE_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
/// A token is renewed this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Where the credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    /// A credentials JSON file.
    File(PathBuf),
    /// The metadata server at this host.
    Metadata(String),
}

/// Finds the credentials as the Go library's `FindDefaultCredentials` does.
pub(super) fn find(service_account_file: Option<PathBuf>, env: &EnvFn) -> Source {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(f) = service_account_file {
        return Source::File(f);
    }
    if let Some(f) = var("GOOGLE_APPLICATION_CREDENTIALS") {
        return Source::File(PathBuf::from(f));
    }
    let config_dir = var("CLOUDSDK_CONFIG")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config/gcloud")));
    if let Some(dir) = config_dir {
        let well_known = dir.join("application_default_credentials.json");
        if well_known.is_file() {
            return Source::File(well_known);
        }
    }
    Source::Metadata(var("GCE_METADATA_HOST").unwrap_or_else(|| DEFAULT_METADATA_HOST.into()))
}

/// A credentials file (the fields of every type this module reads).
#[derive(Deserialize, Default)]
struct CredentialsFile {
    #[serde(rename = "type", default)]
    kind: String,
    // service_account
    #[serde(default)]
    client_email: String,
    #[serde(default)]
    private_key_id: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    token_uri: String,
    // authorized_user
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    refresh_token: String,
    // external_account
    #[serde(default)]
    audience: String,
    #[serde(default)]
    subject_token_type: String,
    #[serde(default)]
    token_url: String,
    #[serde(default)]
    service_account_impersonation_url: String,
    #[serde(default)]
    credential_source: Option<CredentialSource>,
}

#[derive(Deserialize, Default)]
struct CredentialSource {
    #[serde(default)]
    file: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    environment_id: String,
    #[serde(default)]
    executable: Option<serde_json::Value>,
    #[serde(default)]
    format: Option<SourceFormat>,
}

#[derive(Deserialize, Default)]
struct SourceFormat {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    subject_token_field_name: String,
}

/// The credentials, with the last token.
pub(super) struct Credentials {
    source: Source,
    cache: tokio::sync::Mutex<Option<(String, SystemTime)>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn post_form(
    http: &spire_http::Client,
    url: &str,
    body: String,
) -> Result<spire_http::Response, String> {
    let req = spire_http::Request::post(url)
        .and_then(|r| r.header("Content-Type", "application/x-www-form-urlencoded"))
        .map_err(|e| e.to_string())?
        .body(body.into_bytes());
    http.send(req)
        .await
        .map_err(|e| format!("oauth2: cannot fetch token: {e}"))
}

/// An OAuth2 token answer: the token and its lifetime.
fn token_from(resp: &spire_http::Response) -> Result<(String, Duration), String> {
    #[derive(Deserialize)]
    struct Token {
        #[serde(default)]
        access_token: String,
        #[serde(default)]
        expires_in: Option<serde_json::Value>,
    }
    if !resp.status.is_success() {
        return Err(format!(
            "oauth2: cannot fetch token: {}\nResponse: {}",
            resp.status.as_u16(),
            String::from_utf8_lossy(&resp.body[..resp.body.len().min(1024)])
        ));
    }
    let t: Token = resp
        .json()
        .map_err(|e| format!("oauth2: cannot fetch token: {e}"))?;
    if t.access_token.is_empty() {
        return Err("oauth2: server response missing access_token".into());
    }
    let secs = match t.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    Ok((t.access_token, Duration::from_secs(secs.unwrap_or(0))))
}

fn rsa_private_key(pem: &str) -> Result<aws_lc_rs::rsa::KeyPair, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|_| "private key is not PEM".to_string())?;
    aws_lc_rs::rsa::KeyPair::from_pkcs8(&block.contents)
        .or_else(|_| aws_lc_rs::rsa::KeyPair::from_der(&block.contents))
        .map_err(|_| "private key is not an RSA key".to_string())
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Credentials {
    pub(super) fn new(source: Source) -> Self {
        Self {
            source,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// A token for the Compute API: the cached one while valid, else a new one.
    pub(super) async fn token(
        &self,
        http: &spire_http::Client,
        now: &NowFn,
    ) -> Result<String, String> {
        let mut cache = self.cache.lock().await;
        let t = now();
        if let Some((token, expires)) = cache.as_ref()
            && t + EXPIRY_MARGIN < *expires
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = match &self.source {
            Source::Metadata(host) => metadata_token(http, host).await?,
            Source::File(path) => {
                let text =
                    std::fs::read(path).map_err(|e| format!("open {}: {e}", path.display()))?;
                let f: CredentialsFile = serde_json::from_slice(&text)
                    .map_err(|e| format!("invalid credentials file {}: {e}", path.display()))?;
                match f.kind.as_str() {
                    "service_account" => service_account_token(http, &f, t).await?,
                    "authorized_user" => authorized_user_token(http, &f).await?,
                    "external_account" => external_account_token(http, &f).await?,
                    other => return Err(format!("unknown credential type: {other:?}")),
                }
            }
        };
        *cache = Some((token.clone(), t + lifetime));
        Ok(token)
    }
}

async fn metadata_token(
    http: &spire_http::Client,
    host: &str,
) -> Result<(String, Duration), String> {
    let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
    let req = spire_http::Request::get(&url)
        .and_then(|r| r.header("Metadata-Flavor", "Google"))
        .map_err(|e| e.to_string())?;
    let resp = http
        .send(req)
        .await
        .map_err(|e| format!("google: could not find default credentials: {e}"))?;
    token_from(&resp)
}

/// The JWT bearer grant of a service account key.
async fn service_account_token(
    http: &spire_http::Client,
    f: &CredentialsFile,
    now: SystemTime,
) -> Result<(String, Duration), String> {
    let token_uri = if f.token_uri.is_empty() {
        GOOGLE_TOKEN_URI
    } else {
        &f.token_uri
    };
    let key = rsa_private_key(&f.private_key)?;
    let iat = epoch(now);
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": f.private_key_id});
    let claims = serde_json::json!({
        "iss": f.client_email,
        "scope": COMPUTE_SCOPE,
        "aud": token_uri,
        "iat": iat,
        "exp": iat + 3600,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| "signing the token request failed".to_string())?;
    let assertion = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    let body = form(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", &assertion),
    ]);
    token_from(&post_form(http, token_uri, body).await?)
}

/// The refresh token grant of a user's credentials (`gcloud auth application-default
/// login`).
async fn authorized_user_token(
    http: &spire_http::Client,
    f: &CredentialsFile,
) -> Result<(String, Duration), String> {
    if f.refresh_token.is_empty() {
        return Err("oauth2: token expired and refresh token is not set".into());
    }
    let token_uri = if f.token_uri.is_empty() {
        GOOGLE_TOKEN_URI
    } else {
        &f.token_uri
    };
    let body = form(&[
        ("client_id", &f.client_id),
        ("client_secret", &f.client_secret),
        ("grant_type", "refresh_token"),
        ("refresh_token", &f.refresh_token),
    ]);
    token_from(&post_form(http, token_uri, body).await?)
}

/// The subject token of an external account: from a file or a URL, as text or as a field
/// of a JSON object.
async fn subject_token(
    http: &spire_http::Client,
    src: &CredentialSource,
) -> Result<String, String> {
    if !src.environment_id.is_empty() {
        return Err(format!(
            "external account credential source {:?} is not supported by spire-rs (file and url sources are)",
            src.environment_id
        ));
    }
    if src.executable.is_some() {
        return Err(
            "executable-sourced external account credentials are not supported by spire-rs".into(),
        );
    }
    let raw = if !src.file.is_empty() {
        std::fs::read(&src.file).map_err(|e| format!("open {}: {e}", src.file))?
    } else if !src.url.is_empty() {
        let mut req = spire_http::Request::get(&src.url).map_err(|e| e.to_string())?;
        for (k, v) in &src.headers {
            req = req.header(k, v).map_err(|e| e.to_string())?;
        }
        let resp = http.send(req).await.map_err(|e| {
            format!("oauth2/google: invalid response when retrieving subject token: {e}")
        })?;
        if !resp.status.is_success() {
            return Err(format!(
                "oauth2/google: status code {}: {}",
                resp.status.as_u16(),
                String::from_utf8_lossy(&resp.body[..resp.body.len().min(1024)])
            ));
        }
        resp.body.to_vec()
    } else {
        return Err("oauth2/google: unable to determine credential source".into());
    };
    let token = match src.format.as_ref().map(|f| f.kind.as_str()) {
        None | Some("") | Some("text") => String::from_utf8_lossy(&raw).trim().to_string(),
        Some("json") => {
            let field = src
                .format
                .as_ref()
                .map(|f| f.subject_token_field_name.as_str())
                .unwrap_or_default();
            let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| {
                format!("oauth2/google: failed to unmarshal subject token file: {e}")
            })?;
            v.get(field)
                .and_then(|t| t.as_str())
                .map(str::to_owned)
                .ok_or_else(|| {
                    "oauth2/google: provided subject_token_field_name not found in credentials"
                        .to_string()
                })?
        }
        Some(other) => {
            return Err(format!(
                "oauth2/google: invalid credential_source file format type: {other:?}"
            ));
        }
    };
    if token.is_empty() {
        return Err("oauth2/google: the subject token is empty".into());
    }
    Ok(token)
}

/// Workload identity federation: the subject token exchanged at STS, then the service
/// account impersonated when the file names one.
async fn external_account_token(
    http: &spire_http::Client,
    f: &CredentialsFile,
) -> Result<(String, Duration), String> {
    let src = f
        .credential_source
        .as_ref()
        .ok_or("oauth2/google: missing credential_source")?;
    let subject = subject_token(http, src).await?;
    let token_url = if f.token_url.is_empty() {
        "https://sts.googleapis.com/v1/token"
    } else {
        &f.token_url
    };
    // With impersonation the STS token only needs to call IAM Credentials.
    let body = form(&[
        ("audience", &f.audience),
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("scope", COMPUTE_SCOPE),
        ("subject_token", &subject),
        ("subject_token_type", &f.subject_token_type),
    ]);
    let (sts, lifetime) = token_from(&post_form(http, token_url, body).await?)?;
    if f.service_account_impersonation_url.is_empty() {
        return Ok((sts, lifetime));
    }
    let req = spire_http::Request::post(&f.service_account_impersonation_url)
        .and_then(|r| r.header("Authorization", &format!("Bearer {sts}")))
        .and_then(|r| r.json(&serde_json::json!({"scope": [COMPUTE_SCOPE], "lifetime": "3600s"})))
        .map_err(|e| e.to_string())?;
    let resp = http
        .send(req)
        .await
        .map_err(|e| format!("impersonate: unable to generate access token: {e}"))?;
    #[derive(Deserialize)]
    struct Impersonated {
        #[serde(rename = "accessToken", default)]
        access_token: String,
    }
    if !resp.status.is_success() {
        return Err(format!(
            "impersonate: status code {}: {}",
            resp.status.as_u16(),
            String::from_utf8_lossy(&resp.body[..resp.body.len().min(1024)])
        ));
    }
    let t: Impersonated = resp
        .json()
        .map_err(|e| format!("impersonate: unable to parse response: {e}"))?;
    if t.access_token.is_empty() {
        return Err("impersonate: response missing accessToken".into());
    }
    // Asked for an hour.
    Ok((t.access_token, Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::fixtures::{HttpFixture, Reply};

    fn env(vars: &[(&str, String)]) -> EnvFn {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Arc::new(move |k| m.get(k).cloned())
    }

    #[test]
    fn credentials_are_found_in_the_go_librarys_order() {
        let dir = tempfile::tempdir().unwrap();
        let gcloud = dir.path().join("gcloud");
        std::fs::create_dir_all(&gcloud).unwrap();
        let e = env(&[("CLOUDSDK_CONFIG", gcloud.display().to_string())]);
        assert_eq!(
            find(None, &e),
            Source::Metadata("metadata.google.internal".into())
        );
        let well_known = gcloud.join("application_default_credentials.json");
        std::fs::write(&well_known, "{}").unwrap();
        assert_eq!(find(None, &e), Source::File(well_known.clone()));
        let e = env(&[
            ("CLOUDSDK_CONFIG", gcloud.display().to_string()),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/gac.json".into()),
        ]);
        assert_eq!(find(None, &e), Source::File("/gac.json".into()));
        assert_eq!(
            find(Some("/sa.json".into()), &e),
            Source::File("/sa.json".into())
        );
        let e = env(&[
            ("HOME", dir.path().display().to_string()),
            ("GCE_METADATA_HOST", "127.0.0.1:1".into()),
        ]);
        assert_eq!(find(None, &e), Source::Metadata("127.0.0.1:1".into()));
    }

    fn write(dir: &std::path::Path, name: &str, v: &serde_json::Value) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p
    }

    fn now() -> NowFn {
        Arc::new(SystemTime::now)
    }

    #[tokio::test]
    async fn authorized_user_refreshes_and_the_token_is_cached() {
        let f = HttpFixture::start(|r| {
            if r.path() == "/token" {
                Reply::json(
                    200,
                    &serde_json::json!({"access_token": "user-token", "expires_in": 3599, "token_type": "Bearer"}),
                )
            } else {
                Reply::text(404, "")
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "adc.json",
            &serde_json::json!({
                "type": "authorized_user", "client_id": "cid", "client_secret": "csecret",
                "refresh_token": "rt-1", "token_uri": format!("{}/token", f.url())
            }),
        );
        let c = Credentials::new(Source::File(file));
        let http = spire_http::Client::new(Duration::from_secs(5));
        assert_eq!(c.token(&http, &now()).await.unwrap(), "user-token");
        assert_eq!(c.token(&http, &now()).await.unwrap(), "user-token");
        let reqs = f.requests();
        assert_eq!(reqs.len(), 1, "cached");
        let body = String::from_utf8_lossy(&reqs[0].body).into_owned();
        assert_eq!(
            body,
            "client_id=cid&client_secret=csecret&grant_type=refresh_token&refresh_token=rt-1"
        );
    }

    #[tokio::test]
    async fn external_account_exchanges_the_subject_token_and_impersonates() {
        let f = HttpFixture::start(|r| match r.path() {
            "/subject" if r.header("x-flavor") == Some("oidc") => {
                Reply::json(200, &serde_json::json!({"id_token": "subject-jwt"}))
            }
            "/sts" => Reply::json(
                200,
                &serde_json::json!({"access_token": "sts-token", "expires_in": 3600, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer"}),
            ),
            "/impersonate" if r.header("authorization") == Some("Bearer sts-token") => {
                Reply::json(
                    200,
                    &serde_json::json!({"accessToken": "sa-token", "expireTime": "2030-01-01T00:00:00Z"}),
                )
            }
            _ => Reply::text(403, "denied"),
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let audience =
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q";
        let mut v = serde_json::json!({
            "type": "external_account",
            "audience": audience,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": format!("{}/sts", f.url()),
            "credential_source": {
                "url": format!("{}/subject", f.url()),
                "headers": {"x-flavor": "oidc"},
                "format": {"type": "json", "subject_token_field_name": "id_token"}
            },
            "service_account_impersonation_url": format!("{}/impersonate", f.url()),
        });
        let file = write(dir.path(), "wif.json", &v);
        let http = spire_http::Client::new(Duration::from_secs(5));
        let c = Credentials::new(Source::File(file));
        assert_eq!(c.token(&http, &now()).await.unwrap(), "sa-token");
        let reqs = f.requests();
        let sts = reqs.iter().find(|r| r.path() == "/sts").unwrap();
        let body = String::from_utf8_lossy(&sts.body).into_owned();
        assert!(body.contains("subject_token=subject-jwt&"), "{body}");
        assert!(
            body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"),
            "{body}"
        );
        assert!(body.contains(&format!("audience={}", crate::query_escape(audience))));
        let imp = reqs.iter().find(|r| r.path() == "/impersonate").unwrap();
        let sent: serde_json::Value = serde_json::from_slice(&imp.body).unwrap();
        assert_eq!(sent["scope"][0], COMPUTE_SCOPE);

        // A file source, text format, no impersonation: the STS token itself.
        let subject = dir.path().join("token");
        std::fs::write(&subject, "file-subject\n").unwrap();
        v["credential_source"] = serde_json::json!({"file": subject.display().to_string()});
        v.as_object_mut()
            .unwrap()
            .remove("service_account_impersonation_url");
        let c = Credentials::new(Source::File(write(dir.path(), "wif2.json", &v)));
        assert_eq!(c.token(&http, &now()).await.unwrap(), "sts-token");
        let last = f
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.path() == "/sts")
            .unwrap();
        assert!(String::from_utf8_lossy(&last.body).contains("subject_token=file-subject&"));

        // Sources this build does not run are refused by name.
        for (src, want) in [
            (
                serde_json::json!({"environment_id": "aws1", "url": "http://x"}),
                "\"aws1\" is not supported",
            ),
            (
                serde_json::json!({"executable": {"command": "/bin/true"}}),
                "executable-sourced",
            ),
            (
                serde_json::json!({}),
                "unable to determine credential source",
            ),
        ] {
            v["credential_source"] = src;
            let c = Credentials::new(Source::File(write(dir.path(), "bad.json", &v)));
            let err = c.token(&http, &now()).await.unwrap_err();
            assert!(err.contains(want), "{want:?} in {err}");
        }
        let c = Credentials::new(Source::File(write(
            dir.path(),
            "odd.json",
            &serde_json::json!({"type": "impersonated_service_account"}),
        )));
        assert_eq!(
            c.token(&http, &now()).await.unwrap_err(),
            "unknown credential type: \"impersonated_service_account\""
        );
    }
}

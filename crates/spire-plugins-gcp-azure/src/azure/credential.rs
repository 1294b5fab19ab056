//! The credentials the server half calls the ARM APIs with, as SPIRE gets them from
//! azidentity v1.13: a tenant's app registration (`app_id`/`app_secret`: a client secret
//! credential), or, for a tenant without one, `DefaultAzureCredential` with the tenant's ID:
//! the environment (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET`), workload
//! identity (`AZURE_FEDERATED_TOKEN_FILE`: AKS, a federated token exchanged for an access
//! token), then the managed identity of the VM (IMDS, `AZURE_CLIENT_ID` selecting a
//! user-assigned one). `AZURE_TOKEN_CREDENTIALS` narrows the chain as azidentity does.
//! The developer tools at the end of azidentity's chain (Azure CLI, Developer CLI,
//! PowerShell) are not run: a server has no signed-in user.
//!
//! The first member of the chain that issues a token is kept for later calls, as
//! azidentity's chain does, and tokens are reused until five minutes before they expire.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::try_read;
use crate::{EnvFn, NowFn, query_escape};

/// The scope of ARM access tokens.
const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// The resource of ARM managed identity tokens.
const ARM_RESOURCE: &str = "https://management.azure.com/";
/// A token is renewed this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Where tokens come from.
#[derive(Clone)]
pub(crate) struct TokenEndpoints {
    /// The login authority, ending in `/` (`AZURE_AUTHORITY_HOST` or the default).
    pub authority: String,
    /// IMDS, no trailing `/`.
    pub imds: String,
    pub http: spire_http::Client,
    pub now: NowFn,
}

impl std::fmt::Debug for TokenEndpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEndpoints")
            .field("authority", &self.authority)
            .field("imds", &self.imds)
            .finish_non_exhaustive()
    }
}

/// One way of getting a token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// OAuth2 client credentials with a secret.
    ClientSecret {
        tenant: String,
        client_id: String,
        secret: String,
    },
    /// OAuth2 client credentials with a federated token read from a file.
    WorkloadIdentity {
        tenant: String,
        client_id: String,
        file: PathBuf,
    },
    /// IMDS.
    ManagedIdentity { client_id: Option<String> },
}

impl Source {
    fn name(&self) -> &'static str {
        match self {
            Source::ClientSecret { .. } => "ClientSecretCredential",
            Source::WorkloadIdentity { .. } => "WorkloadIdentityCredential",
            Source::ManagedIdentity { .. } => "ManagedIdentityCredential",
        }
    }
}

/// A credential: one source, or a chain of them (`DefaultAzureCredential`).
pub struct Credential {
    /// `ClientSecretCredential` or `DefaultAzureCredential`.
    name: &'static str,
    /// Each member, or why it is unavailable (azidentity's construction error).
    members: Vec<(&'static str, Result<Source, String>)>,
    /// The member that issued the last token.
    chosen: parking_lot::Mutex<Option<usize>>,
    cache: tokio::sync::Mutex<Option<(String, SystemTime)>>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field(
                "members",
                &self.members.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn nonempty(env: &EnvFn, k: &str) -> Option<String> {
    env(k).filter(|v| !v.is_empty())
}

/// azidentity's `NewEnvironmentCredential` (client secret only).
fn environment(env: &EnvFn) -> Result<Source, String> {
    let tenant =
        nonempty(env, "AZURE_TENANT_ID").ok_or("missing environment variable AZURE_TENANT_ID")?;
    let client_id =
        nonempty(env, "AZURE_CLIENT_ID").ok_or("missing environment variable AZURE_CLIENT_ID")?;
    if let Some(secret) = nonempty(env, "AZURE_CLIENT_SECRET") {
        return Ok(Source::ClientSecret {
            tenant,
            client_id,
            secret,
        });
    }
    if nonempty(env, "AZURE_CLIENT_CERTIFICATE_PATH").is_some() {
        return Err(
            "AZURE_CLIENT_CERTIFICATE_PATH: certificate credentials are not supported by spire-rs; use AZURE_CLIENT_SECRET, workload identity or a managed identity".into(),
        );
    }
    if nonempty(env, "AZURE_USERNAME").is_some() {
        return Err(
            "AZURE_USERNAME: username/password credentials are not supported by spire-rs".into(),
        );
    }
    Err("incomplete environment variable configuration. Only AZURE_TENANT_ID and AZURE_CLIENT_ID are set".into())
}

/// azidentity's `NewWorkloadIdentityCredential` with the tenant SPIRE passes.
fn workload_identity(env: &EnvFn, tenant: &str) -> Result<Source, String> {
    let client_id = env("AZURE_CLIENT_ID")
        .ok_or("no client ID specified. Check pod configuration or set ClientID in the options")?;
    let file = env("AZURE_FEDERATED_TOKEN_FILE").ok_or(
        "no token file specified. Check pod configuration or set TokenFilePath in the options",
    )?;
    let tenant = if tenant.is_empty() {
        env("AZURE_TENANT_ID").ok_or(
            "no tenant ID specified. Check pod configuration or set TenantID in the options",
        )?
    } else {
        tenant.to_owned()
    };
    Ok(Source::WorkloadIdentity {
        tenant,
        client_id,
        file: PathBuf::from(file),
    })
}

impl Credential {
    /// A client secret credential (a tenant's `app_id`/`app_secret`).
    pub fn client_secret(tenant: &str, client_id: &str, secret: &str) -> Self {
        Self::new(
            "ClientSecretCredential",
            vec![(
                "ClientSecretCredential",
                Ok(Source::ClientSecret {
                    tenant: tenant.to_owned(),
                    client_id: client_id.to_owned(),
                    secret: secret.to_owned(),
                }),
            )],
        )
    }

    /// `DefaultAzureCredential` for `tenant`, from `env`; an error for an invalid
    /// `AZURE_TOKEN_CREDENTIALS` (azidentity's text).
    pub fn default_chain(tenant: &str, env: &EnvFn) -> Result<Self, String> {
        const ENV: u8 = 1;
        const WI: u8 = 2;
        const MI: u8 = 4;
        const DEV: u8 = 8;
        let selected = match env("AZURE_TOKEN_CREDENTIALS") {
            None => ENV | WI | MI | DEV,
            Some(v) if v == "dev" => DEV,
            Some(v) if v == "prod" => ENV | WI | MI,
            Some(v) if v.eq_ignore_ascii_case("EnvironmentCredential") => ENV,
            Some(v) if v.eq_ignore_ascii_case("WorkloadIdentityCredential") => WI,
            Some(v) if v.eq_ignore_ascii_case("ManagedIdentityCredential") => MI,
            Some(v)
                if [
                    "AzureCLICredential",
                    "AzureDeveloperCLICredential",
                    "AzurePowerShellCredential",
                ]
                .iter()
                .any(|n| v.eq_ignore_ascii_case(n)) =>
            {
                DEV
            }
            Some(v) => {
                return Err(format!(
                    "invalid AZURE_TOKEN_CREDENTIALS value {v:?}. Valid values are \"dev\", \"prod\", or the name of any credential type in the default chain. See https://aka.ms/azsdk/go/identity/docs#DefaultAzureCredential for more information"
                ));
            }
        };
        let mut members = Vec::new();
        if selected & ENV != 0 {
            members.push(("EnvironmentCredential", environment(env)));
        }
        if selected & WI != 0 {
            members.push(("WorkloadIdentityCredential", workload_identity(env, tenant)));
        }
        if selected & MI != 0 {
            members.push((
                "ManagedIdentityCredential",
                Ok(Source::ManagedIdentity {
                    client_id: env("AZURE_CLIENT_ID"),
                }),
            ));
        }
        if selected & DEV != 0 {
            for name in [
                "AzureCLICredential",
                "AzureDeveloperCLICredential",
                "AzurePowerShellCredential",
            ] {
                members.push((
                    name,
                    Err("developer tool credentials are not run by spire-rs".into()),
                ));
            }
        }
        Ok(Self::new("DefaultAzureCredential", members))
    }

    fn new(name: &'static str, members: Vec<(&'static str, Result<Source, String>)>) -> Self {
        Self {
            name,
            members,
            chosen: parking_lot::Mutex::new(None),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// The name of the member that issued the last token, if any.
    pub fn chosen(&self) -> Option<&'static str> {
        let i = (*self.chosen.lock())?;
        self.members.get(i).map(|(n, _)| *n)
    }

    /// An ARM access token: the cached one while it is valid, else a new one from the
    /// chosen member or, before one was chosen, from the first member that issues one.
    pub(crate) async fn token(&self, ep: &TokenEndpoints) -> Result<String, String> {
        let mut cache = self.cache.lock().await;
        let now = (ep.now)();
        if let Some((token, expires)) = cache.as_ref()
            && now + EXPIRY_MARGIN < *expires
        {
            return Ok(token.clone());
        }
        let chosen = *self.chosen.lock();
        let (token, expires) = match chosen {
            Some(i) => {
                let (name, source) = &self.members[i];
                match source {
                    Ok(s) => fetch(s, ep).await.map_err(|e| format!("{name}: {e}"))?,
                    Err(e) => return Err(format!("{name}: {e}")),
                }
            }
            None => self.first_token(ep).await?,
        };
        *cache = Some((token.clone(), now + expires));
        Ok(token)
    }

    async fn first_token(&self, ep: &TokenEndpoints) -> Result<(String, Duration), String> {
        if self.name != "DefaultAzureCredential" {
            let (name, source) = &self.members[0];
            let source = source.as_ref().map_err(|e| format!("{name}: {e}"))?;
            let got = fetch(source, ep)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            *self.chosen.lock() = Some(0);
            return Ok(got);
        }
        let mut attempts = Vec::new();
        for (i, (name, source)) in self.members.iter().enumerate() {
            match source {
                Err(e) => attempts.push(format!("\t{name}: {e}")),
                Ok(s) => match fetch(s, ep).await {
                    Ok(got) => {
                        tracing::debug!(
                            credential = s.name(),
                            "DefaultAzureCredential chose a credential"
                        );
                        *self.chosen.lock() = Some(i);
                        return Ok(got);
                    }
                    Err(e) => attempts.push(format!("\t{name}: {e}")),
                },
            }
        }
        Err(format!(
            "DefaultAzureCredential: failed to acquire a token.\nAttempted credentials:\n{}",
            attempts.join("\n")
        ))
    }
}

/// A token answer of the login authority or of IMDS (IMDS writes numbers as strings).
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

fn lifetime(v: Option<&serde_json::Value>) -> Duration {
    let secs = match v {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    // Without a lifetime the token is used once.
    Duration::from_secs(secs.unwrap_or(0))
}

async fn fetch(source: &Source, ep: &TokenEndpoints) -> Result<(String, Duration), String> {
    let resp = match source {
        Source::ClientSecret {
            tenant,
            client_id,
            secret,
        } => {
            let body = format!(
                "client_id={}&client_secret={}&grant_type=client_credentials&scope={}",
                query_escape(client_id),
                query_escape(secret),
                query_escape(ARM_SCOPE)
            );
            post_token(ep, tenant, body).await?
        }
        Source::WorkloadIdentity {
            tenant,
            client_id,
            file,
        } => {
            // Read at every token request: the kubelet rotates the projected token.
            let assertion = std::fs::read_to_string(file)
                .map_err(|e| format!("failed to read federated token file {file:?}: {e}"))?;
            let assertion = assertion.trim();
            if assertion.is_empty() {
                return Err(format!("federated token file {file:?} is empty"));
            }
            let body = format!(
                "client_assertion={}&client_assertion_type={}&client_id={}&grant_type=client_credentials&scope={}",
                query_escape(assertion),
                query_escape("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                query_escape(client_id),
                query_escape(ARM_SCOPE)
            );
            post_token(ep, tenant, body).await?
        }
        Source::ManagedIdentity { client_id } => {
            let mut url = format!(
                "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}",
                ep.imds,
                query_escape(ARM_RESOURCE)
            );
            if let Some(id) = client_id {
                url.push_str(&format!("&client_id={}", query_escape(id)));
            }
            let req = spire_http::Request::get(&url)
                .and_then(|r| r.header("Metadata", "true"))
                .map_err(|e| e.to_string())?;
            ep.http
                .send(req)
                .await
                .map_err(|e| format!("Get {url:?}: {e}"))?
        }
    };
    if !resp.status.is_success() {
        return Err(format!(
            "authentication failed: {} {}",
            resp.status.as_u16(),
            try_read(&resp.body)
        ));
    }
    let t: TokenAnswer = resp.json().map_err(|e| e.to_string())?;
    if t.access_token.is_empty() {
        return Err("response missing access token".into());
    }
    Ok((t.access_token, lifetime(t.expires_in.as_ref())))
}

async fn post_token(
    ep: &TokenEndpoints,
    tenant: &str,
    body: String,
) -> Result<spire_http::Response, String> {
    let url = format!("{}{tenant}/oauth2/v2.0/token", ep.authority);
    let req = spire_http::Request::post(&url)
        .and_then(|r| r.header("Content-Type", "application/x-www-form-urlencoded"))
        .map_err(|e| e.to_string())?
        .body(body.into_bytes());
    ep.http
        .send(req)
        .await
        .map_err(|e| format!("Post {url:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> EnvFn {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Arc::new(move |k| m.get(k).cloned())
    }

    fn names(c: &Credential) -> Vec<&'static str> {
        c.members.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn the_chain_is_azidentitys_and_azure_token_credentials_narrows_it() {
        let all = Credential::default_chain("t", &env(&[])).unwrap();
        assert_eq!(
            names(&all),
            [
                "EnvironmentCredential",
                "WorkloadIdentityCredential",
                "ManagedIdentityCredential",
                "AzureCLICredential",
                "AzureDeveloperCLICredential",
                "AzurePowerShellCredential"
            ]
        );
        let prod =
            Credential::default_chain("t", &env(&[("AZURE_TOKEN_CREDENTIALS", "prod")])).unwrap();
        assert_eq!(
            names(&prod),
            [
                "EnvironmentCredential",
                "WorkloadIdentityCredential",
                "ManagedIdentityCredential"
            ]
        );
        let wi = Credential::default_chain(
            "t",
            &env(&[("AZURE_TOKEN_CREDENTIALS", "workloadidentitycredential")]),
        )
        .unwrap();
        assert_eq!(names(&wi), ["WorkloadIdentityCredential"]);
        let err =
            Credential::default_chain("t", &env(&[("AZURE_TOKEN_CREDENTIALS", "x")])).unwrap_err();
        assert!(
            err.starts_with("invalid AZURE_TOKEN_CREDENTIALS value \"x\". Valid values are"),
            "{err}"
        );
    }

    #[test]
    fn members_read_the_environment_as_azidentity_does() {
        let e = environment(&env(&[])).unwrap_err();
        assert_eq!(e, "missing environment variable AZURE_TENANT_ID");
        let e = environment(&env(&[("AZURE_TENANT_ID", "t")])).unwrap_err();
        assert_eq!(e, "missing environment variable AZURE_CLIENT_ID");
        let e =
            environment(&env(&[("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")])).unwrap_err();
        assert!(e.starts_with("incomplete environment variable configuration"));
        assert_eq!(
            environment(&env(&[
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_CLIENT_SECRET", "s")
            ])),
            Ok(Source::ClientSecret {
                tenant: "t".into(),
                client_id: "c".into(),
                secret: "s".into()
            })
        );
        let e = workload_identity(&env(&[]), "t").unwrap_err();
        assert!(e.starts_with("no client ID specified"), "{e}");
        let e = workload_identity(&env(&[("AZURE_CLIENT_ID", "c")]), "t").unwrap_err();
        assert!(e.starts_with("no token file specified"), "{e}");
        // SPIRE passes the configured tenant; it wins over AZURE_TENANT_ID.
        assert_eq!(
            workload_identity(
                &env(&[
                    ("AZURE_CLIENT_ID", "c"),
                    ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
                    ("AZURE_TENANT_ID", "other")
                ]),
                "t"
            ),
            Ok(Source::WorkloadIdentity {
                tenant: "t".into(),
                client_id: "c".into(),
                file: "/f".into()
            })
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = Credential::client_secret("t", "app", "s3cret-value");
        assert!(!format!("{c:?}").contains("s3cret-value"));
    }

    #[test]
    fn lifetimes_are_numbers_or_strings() {
        assert_eq!(
            lifetime(Some(&serde_json::json!(3599))),
            Duration::from_secs(3599)
        );
        assert_eq!(
            lifetime(Some(&serde_json::json!("86399"))),
            Duration::from_secs(86399)
        );
        assert_eq!(lifetime(None), Duration::ZERO);
    }
}

//! Where a Kubernetes client connects and how it authenticates: a kubeconfig file (client-go's
//! `clientcmd.BuildConfigFromFlags("", path)`: the current context's cluster and user) or
//! the in-cluster configuration (the pod's service-account token and CA).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use spire_gocompat::os::path_error;
use spire_tls::{ClientIdentity, ServerTrust};

use super::K8sError;

/// Where the in-cluster configuration lives in a pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How requests authenticate beyond the TLS client certificate.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Nothing (or only the client certificate).
    None,
    /// `Authorization: Bearer` with a fixed token.
    Token(String),
    /// `Authorization: Bearer` with the token read from a file on each request (projected
    /// tokens are rotated in place).
    TokenFile(PathBuf),
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Token(_) => f.write_str("Token(..)"),
            Credentials::TokenFile(p) => write!(f, "TokenFile({})", p.display()),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ..)"),
        }
    }
}

/// A resolved client configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The API server's base URL (`https://host:port[/prefix]`).
    pub server: url::Url,
    /// How the server certificate is checked.
    pub trust: ServerTrust,
    /// The name checked in the server certificate, when not the URL's host
    /// (`tls-server-name`).
    pub tls_server_name: Option<String>,
    /// The client certificate, if any.
    pub identity: Option<ClientIdentity>,
    /// Other credentials.
    pub credentials: Credentials,
    /// The files this configuration was read from besides the kubeconfig itself (CA,
    /// client certificate and key): a change to any of them reloads the client.
    pub files: Vec<PathBuf>,
}

/// A YAML `null` (`user:` with nothing after it) reads as the default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawConfig {
    #[serde(deserialize_with = "nullable")]
    clusters: Vec<NamedCluster>,
    #[serde(deserialize_with = "nullable")]
    users: Vec<NamedUser>,
    #[serde(deserialize_with = "nullable")]
    contexts: Vec<NamedContext>,
    #[serde(rename = "current-context")]
    current_context: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NamedCluster {
    name: String,
    #[serde(deserialize_with = "nullable")]
    cluster: RawCluster,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawCluster {
    server: String,
    #[serde(rename = "certificate-authority")]
    certificate_authority: String,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: String,
    #[serde(rename = "insecure-skip-tls-verify")]
    insecure_skip_tls_verify: bool,
    #[serde(rename = "tls-server-name")]
    tls_server_name: String,
    #[serde(rename = "proxy-url")]
    proxy_url: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NamedUser {
    name: String,
    #[serde(deserialize_with = "nullable")]
    user: RawUser,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawUser {
    #[serde(rename = "client-certificate")]
    client_certificate: String,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: String,
    #[serde(rename = "client-key")]
    client_key: String,
    #[serde(rename = "client-key-data")]
    client_key_data: String,
    token: String,
    #[serde(rename = "tokenFile")]
    token_file: String,
    username: String,
    password: String,
    exec: Option<serde_json::Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_json::Value>,
    #[serde(rename = "as")]
    impersonate: String,
    #[serde(rename = "as-uid")]
    impersonate_uid: String,
    #[serde(rename = "as-groups")]
    impersonate_groups: Option<serde_json::Value>,
    #[serde(rename = "as-user-extra")]
    impersonate_extra: Option<serde_json::Value>,
}

impl std::fmt::Debug for RawUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawUser").finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NamedContext {
    name: String,
    #[serde(deserialize_with = "nullable")]
    context: RawContext,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawContext {
    cluster: String,
    user: String,
}

fn invalid(why: impl std::fmt::Display) -> K8sError {
    K8sError::Config(format!("invalid configuration: {why}"))
}

fn read(path: &Path) -> Result<Vec<u8>, K8sError> {
    crate::read_file(path).map_err(K8sError::Config)
}

fn b64(field: &str, data: &str) -> Result<Vec<u8>, K8sError> {
    STANDARD
        .decode(data.trim().as_bytes())
        .map_err(|e| invalid(format!("{field}: illegal base64 data: {e}")))
}

/// Relative paths in a kubeconfig are relative to the file's directory.
fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Loads the kubeconfig file at `path` and resolves its current context.
pub fn from_kubeconfig(path: &Path) -> Result<ClientConfig, K8sError> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(K8sError::Config(path_error(
            "stat",
            &path.display().to_string(),
            &e,
        )));
    }
    let text = String::from_utf8(read(path)?)
        .map_err(|_| K8sError::Config(format!("{}: not UTF-8 text", path.display())))?;
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_saphyr::from_str(&text).map_err(|e| {
            K8sError::Config(format!(
                "error loading config file {:?}: {e}",
                path.display()
            ))
        })?
    };
    let base = path.parent().unwrap_or(Path::new("."));
    resolve_config(raw, base)
}

fn resolve_config(raw: RawConfig, base: &Path) -> Result<ClientConfig, K8sError> {
    if raw.current_context.is_empty() {
        return Err(invalid("no configuration has been provided"));
    }
    let ctx = raw
        .contexts
        .iter()
        .find(|c| c.name == raw.current_context)
        .ok_or_else(|| {
            invalid(format!(
                "context was not found for specified context: {}",
                raw.current_context
            ))
        })?;
    let cluster = raw
        .clusters
        .iter()
        .find(|c| c.name == ctx.context.cluster)
        .ok_or_else(|| {
            invalid(format!(
                "cluster has no server defined (cluster {:?} not found)",
                ctx.context.cluster
            ))
        })?;
    let c = &cluster.cluster;
    if !c.proxy_url.is_empty() {
        return Err(invalid("proxy-url is not supported"));
    }
    if c.server.is_empty() {
        return Err(invalid("cluster has no server defined"));
    }
    let server =
        url::Url::parse(&c.server).map_err(|e| invalid(format!("server {:?}: {e}", c.server)))?;
    if server.scheme() != "https" && server.scheme() != "http" {
        return Err(invalid(format!(
            "server {:?}: unsupported scheme {:?}",
            c.server,
            server.scheme()
        )));
    }
    let mut files = Vec::new();
    let has_ca = !c.certificate_authority.is_empty() || !c.certificate_authority_data.is_empty();
    if c.insecure_skip_tls_verify && has_ca {
        return Err(invalid(
            "specifying a root certificates file with the insecure flag is not allowed",
        ));
    }
    let trust = if c.insecure_skip_tls_verify {
        ServerTrust::SkipVerification
    } else if !c.certificate_authority_data.is_empty() {
        let pem = b64("certificate-authority-data", &c.certificate_authority_data)?;
        ServerTrust::Roots(
            spire_tls::certs_from_pem(&pem).map_err(|e| K8sError::Config(e.to_string()))?,
        )
    } else if !c.certificate_authority.is_empty() {
        files.push(resolve(base, &c.certificate_authority));
        let pem = read(&resolve(base, &c.certificate_authority))?;
        ServerTrust::Roots(
            spire_tls::certs_from_pem(&pem).map_err(|e| K8sError::Config(e.to_string()))?,
        )
    } else {
        ServerTrust::Roots(spire_tls::system_roots().map_err(|e| K8sError::Config(e.to_string()))?)
    };

    let user = raw.users.iter().find(|u| u.name == ctx.context.user);
    let (identity, credentials) = match user {
        None => (None, Credentials::None),
        Some(u) => {
            for f in [&u.user.client_certificate, &u.user.client_key] {
                if !f.is_empty() {
                    files.push(resolve(base, f));
                }
            }
            user_credentials(&u.user, base)?
        }
    };
    Ok(ClientConfig {
        server,
        trust,
        tls_server_name: (!c.tls_server_name.is_empty()).then(|| c.tls_server_name.clone()),
        identity,
        credentials,
        files,
    })
}

fn user_credentials(
    u: &RawUser,
    base: &Path,
) -> Result<(Option<ClientIdentity>, Credentials), K8sError> {
    if u.exec.is_some() || u.auth_provider.is_some() {
        return Err(invalid(
            "exec and auth-provider credentials are not supported; use a client certificate or a token",
        ));
    }
    if !u.impersonate.is_empty()
        || !u.impersonate_uid.is_empty()
        || u.impersonate_groups.is_some()
        || u.impersonate_extra.is_some()
    {
        return Err(invalid(
            "impersonation (as, as-uid, as-groups, as-user-extra) is not supported",
        ));
    }
    let cert = if !u.client_certificate_data.is_empty() {
        Some(b64("client-certificate-data", &u.client_certificate_data)?)
    } else if !u.client_certificate.is_empty() {
        Some(read(&resolve(base, &u.client_certificate))?)
    } else {
        None
    };
    let key = if !u.client_key_data.is_empty() {
        Some(b64("client-key-data", &u.client_key_data)?)
    } else if !u.client_key.is_empty() {
        Some(read(&resolve(base, &u.client_key))?)
    } else {
        None
    };
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some(
            ClientIdentity::from_pem(&c, &k)
                .map_err(|e| invalid(format!("client certificate or key: {e}")))?,
        ),
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "client-cert-data and client-cert are both specified for user but no client key",
            ));
        }
        (None, Some(_)) => return Err(invalid("client key given without a client certificate")),
    };
    let credentials = if !u.token.is_empty() {
        Credentials::Token(u.token.clone())
    } else if !u.token_file.is_empty() {
        Credentials::TokenFile(resolve(base, &u.token_file))
    } else if !u.username.is_empty() || !u.password.is_empty() {
        Credentials::Basic {
            username: u.username.clone(),
            password: u.password.clone(),
        }
    } else {
        Credentials::None
    };
    Ok((identity, credentials))
}

/// client-go's `rest.InClusterConfig`: the API server from `KUBERNETES_SERVICE_HOST` and
/// `KUBERNETES_SERVICE_PORT`, the service account's token (re-read on each request) and CA
/// from `dir` (normally [`SERVICE_ACCOUNT_DIR`]).
pub fn in_cluster(
    host: Option<String>,
    port: Option<String>,
    dir: &Path,
) -> Result<ClientConfig, K8sError> {
    let (Some(host), Some(port)) = (
        host.filter(|h| !h.is_empty()),
        port.filter(|p| !p.is_empty()),
    ) else {
        return Err(K8sError::Config(
            "unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined".into(),
        ));
    };
    let token = dir.join("token");
    read(&token)?;
    let host_port = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let server = url::Url::parse(&format!("https://{host_port}"))
        .map_err(|e| invalid(format!("server {host_port:?}: {e}")))?;
    let ca = read(&dir.join("ca.crt"))?;
    let roots = spire_tls::certs_from_pem(&ca).map_err(|e| {
        K8sError::Config(format!(
            "expected to load root CA config from {}, but got err: {e}",
            dir.join("ca.crt").display()
        ))
    })?;
    Ok(ClientConfig {
        server,
        trust: ServerTrust::Roots(roots),
        tls_server_name: None,
        identity: None,
        credentials: Credentials::TokenFile(token),
        files: vec![dir.join("ca.crt")],
    })
}

/// The in-cluster configuration from this process's environment.
pub fn in_cluster_from_env() -> Result<ClientConfig, K8sError> {
    in_cluster(
        std::env::var("KUBERNETES_SERVICE_HOST").ok(),
        std::env::var("KUBERNETES_SERVICE_PORT").ok(),
        Path::new(SERVICE_ACCOUNT_DIR),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    fn client_pems() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["admin".into()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn kubeconfig_with_files_relative_to_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca_pem()).unwrap();
        let (cert, key) = client_pems();
        std::fs::write(dir.path().join("admin.crt"), cert).unwrap();
        std::fs::write(dir.path().join("admin.key"), key).unwrap();
        let kc = dir.path().join("kubeconfig");
        std::fs::write(
            &kc,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: ca.crt\nusers:\n- name: u\n  user:\n    client-certificate: admin.crt\n    client-key: admin.key\n    token: abc\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
        )
        .unwrap();
        let c = from_kubeconfig(&kc).unwrap();
        assert_eq!(c.server.as_str(), "https://127.0.0.1:6443/");
        assert!(matches!(c.trust, ServerTrust::Roots(ref r) if r.len() == 1));
        assert!(c.identity.is_some());
        assert_eq!(c.credentials, Credentials::Token("abc".into()));
    }

    #[test]
    fn kubeconfig_with_inline_data_and_insecure() {
        let dir = tempfile::tempdir().unwrap();
        let kc = dir.path().join("kubeconfig");
        let ca = STANDARD.encode(ca_pem());
        std::fs::write(
            &kc,
            format!("clusters:\n- name: c\n  cluster:\n    server: https://k:1\n    certificate-authority-data: {ca}\ncontexts:\n- name: x\n  context: {{cluster: c, user: none}}\ncurrent-context: x\n"),
        )
        .unwrap();
        let c = from_kubeconfig(&kc).unwrap();
        assert!(matches!(c.trust, ServerTrust::Roots(_)));
        assert!(c.identity.is_none());

        std::fs::write(
            &kc,
            format!("clusters:\n- name: c\n  cluster:\n    server: https://k:1\n    insecure-skip-tls-verify: true\n    certificate-authority-data: {ca}\ncontexts:\n- name: x\n  context: {{cluster: c}}\ncurrent-context: x\n"),
        )
        .unwrap();
        let err = from_kubeconfig(&kc).unwrap_err().to_string();
        assert!(err.contains("insecure flag is not allowed"), "{err}");
    }

    #[test]
    fn kubeconfig_errors_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert_eq!(
            from_kubeconfig(&missing).unwrap_err().to_string(),
            format!("stat {}: no such file or directory", missing.display())
        );
        let kc = dir.path().join("kubeconfig");
        std::fs::write(&kc, "").unwrap();
        assert_eq!(
            from_kubeconfig(&kc).unwrap_err().to_string(),
            "invalid configuration: no configuration has been provided"
        );
        std::fs::write(&kc, "current-context: [").unwrap();
        assert!(
            from_kubeconfig(&kc)
                .unwrap_err()
                .to_string()
                .contains("error loading config file")
        );
        std::fs::write(
            &kc,
            "current-context: x\ncontexts:\n- name: y\n  context:\nusers:\n",
        )
        .unwrap();
        assert_eq!(
            from_kubeconfig(&kc).unwrap_err().to_string(),
            "invalid configuration: context was not found for specified context: x"
        );
    }

    #[test]
    fn unsupported_settings_are_refused_and_referenced_files_tracked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca_pem()).unwrap();
        let kc = dir.path().join("kubeconfig");
        let base = "clusters:\n- name: c\n  cluster:\n    server: https://k:1\n    certificate-authority: ca.crt\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n";
        std::fs::write(
            &kc,
            format!("{base}users:\n- name: u\n  user:\n    token: t\n"),
        )
        .unwrap();
        let c = from_kubeconfig(&kc).unwrap();
        assert_eq!(c.files, vec![dir.path().join("ca.crt")]);
        std::fs::write(
            &kc,
            format!("{base}users:\n- name: u\n  user:\n    token: t\n    as: someone-else\n"),
        )
        .unwrap();
        assert!(
            from_kubeconfig(&kc)
                .unwrap_err()
                .to_string()
                .contains("impersonation")
        );
        std::fs::write(
            &kc,
            base.replace(
                "    certificate-authority: ca.crt\n",
                "    proxy-url: http://proxy:3128\n",
            ),
        )
        .unwrap();
        assert!(
            from_kubeconfig(&kc)
                .unwrap_err()
                .to_string()
                .contains("proxy-url")
        );
    }

    #[test]
    fn in_cluster_needs_the_environment_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = in_cluster(None, Some("443".into()), dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined")
        );
        let err = in_cluster(Some("10.0.0.1".into()), Some("443".into()), dir.path()).unwrap_err();
        assert!(err.to_string().starts_with("open "), "{err}");
        std::fs::write(dir.path().join("token"), "t").unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca_pem()).unwrap();
        let c = in_cluster(Some("fd00::1".into()), Some("443".into()), dir.path()).unwrap();
        assert_eq!(c.server.as_str(), "https://[fd00::1]/");
        assert_eq!(
            c.credentials,
            Credentials::TokenFile(dir.path().join("token"))
        );
    }
}

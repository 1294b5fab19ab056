//! UpstreamAuthority `disk`: the server's CA is signed by a CA whose certificate and key sit
//! in files, as SPIRE 1.13's `disk` plugin does it.
//!
//! The files are read at configuration (a bad set refuses the configuration) and again at
//! every mint, so an operator can replace them without a restart; a mint whose reload fails
//! falls back to the last good set. With no `bundle_file_path` the certificate must be a
//! single self-signed CA, which is then the upstream root; with one, the certificate file's
//! chain must lead to a root in the bundle file. JWT keys are not published upstream.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::Deserialize;
use spiffe_core::{PrivateKey, TrustDomain};
use spire_pki::X509Authority as Authority;
use spire_plugin::{
    JwtKey, LocalSigner, PluginError, PluginResult, UpstreamAuthority, UpstreamUpdates,
    UpstreamX509Ca,
};

/// The plugin's name in SPIRE's catalog.
pub const PLUGIN_NAME: &str = "disk";

/// `plugin_data` of the `disk` UpstreamAuthority.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    /// The upstream CA certificate, then (with a bundle) its chain.
    #[serde(default)]
    pub cert_file_path: String,
    /// The upstream CA's private key (PKCS#8, SEC1 or PKCS#1 PEM).
    #[serde(default)]
    pub key_file_path: String,
    /// The upstream roots; empty when the certificate is a self-signed root.
    #[serde(default)]
    pub bundle_file_path: String,
}

/// Reads the wall clock (the system's in the server, a fake one in tests).
pub type NowFn = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// What one successful read of the files gives.
struct Loaded {
    authority: Authority,
    /// The certificate file's certificates when a bundle is configured (the CA first);
    /// empty for a self-signed root.
    chain: Vec<Vec<u8>>,
    roots: Vec<Vec<u8>>,
}

/// The `disk` UpstreamAuthority.
pub struct DiskUpstreamAuthority {
    config: Config,
    trust_domain: TrustDomain,
    now: NowFn,
    current: Mutex<Arc<Loaded>>,
}

impl std::fmt::Debug for DiskUpstreamAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskUpstreamAuthority")
            .field("cert_file_path", &self.config.cert_file_path)
            .field("bundle_file_path", &self.config.bundle_file_path)
            .finish_non_exhaustive()
    }
}

fn invalid(message: String) -> PluginError {
    PluginError::invalid_argument(message)
}

fn read(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("open : no such file or directory".into());
    }
    std::fs::read_to_string(path).map_err(|e| format!("open {path}: {e}"))
}

fn certificates(path: &str) -> Result<Vec<Vec<u8>>, String> {
    let text = read(path)?;
    let certs = spiffe_core::x509svid::parse_pem_certificates(&text).map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM blocks".into());
    }
    Ok(certs)
}

fn load(config: &Config, trust_domain: &TrustDomain, now: SystemTime) -> PluginResult<Loaded> {
    let key = read(&config.key_file_path)
        .and_then(|t| PrivateKey::from_pem(&t).map_err(|e| e.to_string()))
        .map_err(|e| invalid(format!("unable to load upstream CA key: {e}")))?;
    let mut certs = certificates(&config.cert_file_path)
        .map_err(|e| invalid(format!("unable to load upstream CA cert: {e}")))?;
    let roots = if config.bundle_file_path.is_empty() {
        if certs.len() != 1 {
            return Err(invalid(
                "with no bundle_file_path configured only self-signed CAs are supported".into(),
            ));
        }
        std::mem::take(&mut certs)
    } else {
        certificates(&config.bundle_file_path)
            .map_err(|e| invalid(format!("unable to load upstream CA bundle: {e}")))?
    };
    let Some(ca) = certs.first().or(roots.first()).cloned() else {
        return Err(invalid(
            "unable to load upstream CA cert: no PEM blocks".into(),
        ));
    };
    let spki = {
        use x509_parser::prelude::FromDer as _;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&ca)
            .map_err(|e| invalid(format!("unable to load upstream CA cert: {e}")))?;
        cert.public_key().raw.to_vec()
    };
    if spki != key.public_key().spki_der() {
        return Err(invalid(
            "unable to load upstream CA: certificate and private key do not match".into(),
        ));
    }
    let intermediates = certs.get(1..).unwrap_or_default();
    if spiffe_core::x509svid::verify_x509_path(&ca, intermediates, &roots, now).is_err() {
        return Err(invalid("unable to load upstream CA: certificate cannot be validated with the provided bundle or is not self-signed".into()));
    }
    let signer = Arc::new(LocalSigner::new("upstream", key));
    let authority = Authority::new(ca, signer, trust_domain.clone())
        .map_err(|e| invalid(format!("unable to load upstream CA: {e}")))?;
    Ok(Loaded {
        authority,
        chain: certs,
        roots,
    })
}

impl DiskUpstreamAuthority {
    /// Reads and checks the files; an unusable set refuses the configuration.
    pub fn new(config: &Config, trust_domain: TrustDomain, now: NowFn) -> PluginResult<Self> {
        let loaded = load(config, &trust_domain, now())?;
        Ok(Self {
            config: config.clone(),
            trust_domain,
            now,
            current: Mutex::new(Arc::new(loaded)),
        })
    }

    /// The files as they are now, or the last good set when they no longer load.
    fn reload(&self) -> Arc<Loaded> {
        match load(&self.config, &self.trust_domain, (self.now)()) {
            Ok(l) => {
                let l = Arc::new(l);
                *self.current.lock() = l.clone();
                l
            }
            Err(e) => {
                tracing::warn!(error = %e, plugin_name = PLUGIN_NAME, "Failed to reload the upstream CA files; using the last good ones");
                self.current.lock().clone()
            }
        }
    }
}

#[async_trait]
impl UpstreamAuthority for DiskUpstreamAuthority {
    async fn mint_x509_ca(
        &self,
        csr: &[u8],
        preferred_ttl_secs: i32,
        _updates: Arc<dyn UpstreamUpdates>,
    ) -> PluginResult<UpstreamX509Ca> {
        let loaded = self.reload();
        let ttl = Duration::from_secs(u64::try_from(preferred_ttl_secs).unwrap_or(0));
        let cert = loaded
            .authority
            .sign_upstream_ca_csr(csr, &self.trust_domain, ttl, (self.now)())
            .map_err(|e| PluginError::internal(format!("unable to sign CSR: {e}")))?;
        let mut x509_ca_chain = vec![cert];
        x509_ca_chain.extend(loaded.chain.iter().cloned());
        Ok(UpstreamX509Ca {
            x509_ca_chain,
            upstream_x509_roots: loaded.roots.clone(),
        })
    }

    async fn publish_jwt_key(
        &self,
        _key: &JwtKey,
        _updates: Arc<dyn UpstreamUpdates>,
    ) -> PluginResult<Vec<JwtKey>> {
        Err(PluginError::unimplemented(
            "publishing upstream is unsupported",
        ))
    }
}

#[cfg(test)]
mod tests;

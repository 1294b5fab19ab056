//! UpstreamAuthority `cert-manager`: the server's CA is signed by a cert-manager issuer, as
//! SPIRE 1.13's plugin does it.
//!
//! A mint creates a `cert-manager.io/v1` `CertificateRequest` (`generateName: spiffe-ca-`,
//! labelled with the trust domain, `isCA`, usages `cert sign` and `crl sign`, the requested
//! duration and the configured issuer), then reads it every 250 ms for up to 75 s until the
//! issuer has put the certificate in its status (or denied it, or failed it). The chain is
//! `status.certificate`, the upstream roots `status.ca`. After each mint, requests of this
//! trust domain that are denied, ready or failed are deleted, as SPIRE cleans up. JWT keys
//! are not published upstream.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use spire_plugin::{
    Code, JwtKey, PluginError, PluginResult, UpstreamAuthority, UpstreamUpdates, UpstreamX509Ca,
};

use crate::client::{ConfigSource, KubeClient, path_segment};

/// The plugin's name in SPIRE's catalog.
pub const PLUGIN_NAME: &str = "cert-manager";

const TRUST_DOMAIN_LABEL: &str = "cert-manager.spiffe.io/trust-domain";
const POLL: Duration = Duration::from_millis(250);
const POLLS: u32 = 300;

/// `plugin_data` of the `cert-manager` UpstreamAuthority.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub issuer_name: String,
    #[serde(default)]
    pub issuer_kind: String,
    #[serde(default)]
    pub issuer_group: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub kube_config_file: String,
}

/// The `cert-manager` UpstreamAuthority.
#[derive(Debug)]
pub struct CertManagerUpstreamAuthority {
    client: KubeClient,
    trust_domain: String,
    namespace: String,
    issuer: (String, String, String),
}

fn internal(message: impl Into<String>) -> PluginError {
    PluginError::new(Code::Internal, message)
}

/// Go's `time.Duration.String()` of whole seconds (`24h0m0s`, `1m30s`, `0s`), which is
/// how `metav1.Duration` is written.
pub fn go_duration(secs: u64) -> String {
    use spire_gocompat::duration::{GoDuration, format_go_duration};
    GoDuration::from_std(Duration::from_secs(secs))
        .map_or_else(|| format!("{secs}s"), format_go_duration)
}

/// Whether the request's status has a condition of `kind` with `status` (and `reason`,
/// when given).
fn has_condition(cr: &Value, kind: &str, status: &str, reason: Option<&str>) -> bool {
    cr["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| {
            c["type"] == kind && c["status"] == status && reason.is_none_or(|r| c["reason"] == r)
        })
    })
}

/// PEM certificates from a base64 `[]byte` field.
fn pem_field(v: &Value) -> Result<Vec<Vec<u8>>, String> {
    let b64 = v.as_str().unwrap_or_default();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8(pem).map_err(|e| e.to_string())?;
    let certs = spiffe_core::x509svid::parse_pem_certificates(&text).map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM blocks".into());
    }
    Ok(certs)
}

impl CertManagerUpstreamAuthority {
    /// Checks the configuration as SPIRE does (defaults: kind `Issuer`, group
    /// `cert-manager.io`); the cluster is not contacted until the first mint.
    pub fn new(config: &Config, trust_domain: &str) -> PluginResult<Self> {
        if config.namespace.is_empty() {
            return Err(PluginError::invalid_argument(
                "plugin configuration has empty namespace property",
            ));
        }
        if config.issuer_name.is_empty() {
            return Err(PluginError::invalid_argument(
                "plugin configuration has empty issuer_name property",
            ));
        }
        let or = |v: &str, d: &str| if v.is_empty() { d } else { v }.to_string();
        Ok(Self {
            client: KubeClient::new(ConfigSource::from_path(&config.kube_config_file)),
            trust_domain: trust_domain.to_string(),
            namespace: config.namespace.clone(),
            issuer: (
                config.issuer_name.clone(),
                or(&config.issuer_kind, "Issuer"),
                or(&config.issuer_group, "cert-manager.io"),
            ),
        })
    }

    fn collection(&self) -> String {
        format!(
            "/apis/cert-manager.io/v1/namespaces/{}/certificaterequests",
            path_segment(&self.namespace)
        )
    }

    /// The `CertificateRequest` SPIRE creates for `csr`.
    pub fn request_object(&self, csr: &[u8], preferred_ttl_secs: i32) -> Value {
        let pem = spiffe_core::pem_encode("CERTIFICATE REQUEST", csr);
        json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "CertificateRequest",
            "metadata": {
                "generateName": "spiffe-ca-",
                "namespace": self.namespace,
                "labels": { TRUST_DOMAIN_LABEL: self.trust_domain },
            },
            "spec": {
                "duration": go_duration(u64::try_from(preferred_ttl_secs).unwrap_or(0)),
                "issuerRef": {
                    "name": self.issuer.0,
                    "kind": self.issuer.1,
                    "group": self.issuer.2,
                },
                "request": base64::engine::general_purpose::STANDARD.encode(pem),
                "isCA": true,
                "usages": ["cert sign", "crl sign"],
            },
        })
    }

    async fn wait_signed(&self, name: &str) -> PluginResult<Value> {
        let path = format!("{}/{}", self.collection(), path_segment(name));
        for _ in 0..POLLS {
            tokio::time::sleep(POLL).await;
            let cr: Value = self.client.get(&path).await.map_err(|e| {
                internal(format!(
                    "kubernetes cluster client failed to get object: {e}"
                ))
            })?;
            if has_condition(&cr, "Denied", "True", None) {
                tracing::error!(namespace = %self.namespace, name, plugin_name = PLUGIN_NAME, "Created CertificateRequest has been denied");
                return Err(PluginError::new(
                    Code::PermissionDenied,
                    "request has been denied",
                ));
            }
            if has_condition(&cr, "Ready", "False", Some("Failed")) {
                tracing::error!(namespace = %self.namespace, name, plugin_name = PLUGIN_NAME, "Created CertificateRequest has failed");
                return Err(internal("request has failed"));
            }
            if cr["status"]["certificate"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
            {
                return Ok(cr);
            }
        }
        tracing::error!(namespace = %self.namespace, name, plugin_name = PLUGIN_NAME, "Failed to wait for CertificateRequest to become ready in time");
        Err(internal("request did not become ready in time"))
    }

    /// Deletes this trust domain's requests that are denied, ready or failed.
    async fn cleanup(&self) -> Result<(), String> {
        let selector = format!("{TRUST_DOMAIN_LABEL}={}", self.trust_domain);
        let list: Value = self
            .client
            .get(&format!(
                "{}?labelSelector={}",
                self.collection(),
                path_segment(&selector)
            ))
            .await
            .map_err(|e| e.to_string())?;
        for cr in list["items"].as_array().into_iter().flatten() {
            let stale = has_condition(cr, "Denied", "True", None)
                || has_condition(cr, "Ready", "True", None)
                || has_condition(cr, "Ready", "False", Some("Failed"));
            if !stale {
                continue;
            }
            let name = cr["metadata"]["name"].as_str().unwrap_or_default();
            tracing::debug!(namespace = %self.namespace, name, plugin_name = PLUGIN_NAME, "Deleting stale CertificateRequest");
            self.client
                .delete(&format!("{}/{}", self.collection(), path_segment(name)))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn mint(&self, csr: &[u8], preferred_ttl_secs: i32) -> PluginResult<UpstreamX509Ca> {
        let created: Value = self
            .client
            .create(
                &self.collection(),
                &self.request_object(csr, preferred_ttl_secs),
            )
            .await
            .map_err(|e| internal(format!("failed to create object: {e}")))?;
        let name = created["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        tracing::info!(namespace = %self.namespace, name, plugin_name = PLUGIN_NAME, "Waiting for certificaterequest to be signed");
        let cr = self.wait_signed(&name).await?;
        let chain = pem_field(&cr["status"]["certificate"])
            .map_err(|e| internal(format!("failed to parse certificate: {e}")))?;
        if cr["status"]["ca"].as_str().is_none_or(str::is_empty) {
            return Err(internal("no upstream CA root returned from request"));
        }
        let roots = pem_field(&cr["status"]["ca"])
            .map_err(|e| internal(format!("failed to parse CA certificate: {e}")))?;
        Ok(UpstreamX509Ca {
            x509_ca_chain: chain,
            upstream_x509_roots: roots,
        })
    }
}

#[async_trait]
impl UpstreamAuthority for CertManagerUpstreamAuthority {
    async fn mint_x509_ca(
        &self,
        csr: &[u8],
        preferred_ttl_secs: i32,
        _updates: Arc<dyn UpstreamUpdates>,
    ) -> PluginResult<UpstreamX509Ca> {
        let result = self.mint(csr, preferred_ttl_secs).await;
        tracing::debug!(
            plugin_name = PLUGIN_NAME,
            "Optimistically cleaning-up stale CertificateRequests"
        );
        if let Err(e) = self.cleanup().await {
            tracing::error!(error = %e, plugin_name = PLUGIN_NAME, "Failed to optimistically clean-up stale CertificateRequests");
        }
        result
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
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_go_writes_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(45), "45s");
        assert_eq!(go_duration(90), "1m30s");
        assert_eq!(go_duration(3600), "1h0m0s");
        assert_eq!(go_duration(86400), "24h0m0s");
        assert_eq!(go_duration(90061), "25h1m1s");
    }

    #[test]
    fn configuration_is_checked_and_defaulted_as_spire_does() {
        let err = CertManagerUpstreamAuthority::new(&Config::default(), "example.org").unwrap_err();
        assert_eq!(
            err.message,
            "plugin configuration has empty namespace property"
        );
        let err = CertManagerUpstreamAuthority::new(
            &Config {
                namespace: "ns".into(),
                ..Config::default()
            },
            "example.org",
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "plugin configuration has empty issuer_name property"
        );
        let p = CertManagerUpstreamAuthority::new(
            &Config {
                namespace: "ns".into(),
                issuer_name: "spire-ca".into(),
                ..Config::default()
            },
            "example.org",
        )
        .unwrap();
        let obj = p.request_object(b"\x30\x00", 86400);
        assert_eq!(
            obj["spec"]["issuerRef"],
            json!({"name": "spire-ca", "kind": "Issuer", "group": "cert-manager.io"})
        );
        assert_eq!(obj["spec"]["duration"], "24h0m0s");
        assert_eq!(obj["metadata"]["labels"][TRUST_DOMAIN_LABEL], "example.org");
        let pem = base64::engine::general_purpose::STANDARD
            .decode(obj["spec"]["request"].as_str().unwrap())
            .unwrap();
        assert!(pem.starts_with(b"-----BEGIN CERTIFICATE REQUEST-----\n"));
    }

    #[test]
    fn conditions_are_matched_as_spire_matches_them() {
        let cr = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "Failed", "message": "no"}
        ]}});
        assert!(has_condition(&cr, "Ready", "False", Some("Failed")));
        assert!(has_condition(&cr, "Ready", "False", None));
        assert!(!has_condition(&cr, "Ready", "False", Some("Pending")));
        assert!(!has_condition(&cr, "Denied", "True", None));
        assert!(!has_condition(&json!({}), "Ready", "True", None));
    }
}

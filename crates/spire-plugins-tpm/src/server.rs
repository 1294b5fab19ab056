//! The server half of `tpm_devid` (SPIRE's pkg/server/plugin/nodeattestor/tpmdevid).
//!
//! Checks, in SPIRE's order: the DevID certificate chains to `devid_ca_path`; the EK
//! certificate chains to `endorsement_ca_path` and holds the EK the agent created; the AK
//! certified the DevID key (same TPM). Then one challenge carries a nonce for the DevID key to
//! sign and a credential only the TPM holding both the EK and the AK can activate. The agent
//! ID is `/spire/agent/tpm_devid/<sha1 of the DevID certificate>`; selectors `subject:cn`,
//! `issuer:cn` and one `ca:fingerprint` per CA on the verified chain.

use std::fs;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self, RsaPublicKeyComponents};
use serde::Deserialize;
use spiffe_core::keys::{Curve, PublicKeyKind};
use spiffe_core::{PublicKey, TrustDomain, x509svid};
use spire_plugin::{AttestedAgent, Challenger, PluginError, PluginResult, ServerNodeAttestor};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::tpm2::{self, Public, Reader, Signature};
use crate::wire::{AttestationRequest, ChallengeRequest, ChallengeResponse, CredActivation};
use crate::{PLUGIN_NAME, fingerprint};

const DEVID_NONCE_LEN: usize = 32;

/// `plugin_data` of the server's `tpm_devid` NodeAttestor.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerConfig {
    /// PEM bundle of the CAs that issue DevID certificates.
    #[serde(default)]
    pub devid_ca_path: String,
    /// PEM bundle of the CAs that issue EK certificates (used as roots).
    #[serde(default)]
    pub endorsement_ca_path: String,
}

/// Supplies the current time (certificate validity).
pub type Now = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The server half of `tpm_devid`.
pub struct TpmDevIdServer {
    trust_domain: TrustDomain,
    devid_roots: Vec<Vec<u8>>,
    ek_roots: Vec<Vec<u8>>,
    now: Now,
    rng: Arc<dyn SecureRandom + Send + Sync>,
}

impl std::fmt::Debug for TpmDevIdServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmDevIdServer")
            .field("devid_roots", &self.devid_roots.len())
            .field("ek_roots", &self.ek_roots.len())
            .finish_non_exhaustive()
    }
}

fn load_pool(path: &str) -> Result<Vec<Vec<u8>>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("open {path}: {e}"))?;
    let certs = x509svid::parse_pem_certificates(&text).map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err(format!("no certificates found in {path}"));
    }
    Ok(certs)
}

impl TpmDevIdServer {
    /// Builds the plugin from its configuration (SPIRE's `buildConfig` errors, joined).
    pub fn new(config: &ServerConfig, trust_domain: TrustDomain) -> PluginResult<Self> {
        Self::with_env(
            config,
            trust_domain,
            Arc::new(SystemTime::now),
            Arc::new(SystemRandom::new()),
        )
    }

    /// As [`TpmDevIdServer::new`] with an explicit clock and random source.
    pub fn with_env(
        config: &ServerConfig,
        trust_domain: TrustDomain,
        now: Now,
        rng: Arc<dyn SecureRandom + Send + Sync>,
    ) -> PluginResult<Self> {
        if config.devid_ca_path.is_empty() {
            return Err(PluginError::invalid_argument("devid_ca_path is required"));
        }
        if config.endorsement_ca_path.is_empty() {
            return Err(PluginError::invalid_argument(
                "endorsement_ca_path is required",
            ));
        }
        let devid_roots = load_pool(&config.devid_ca_path).map_err(|e| {
            PluginError::invalid_argument(format!("unable to load DevID trust bundle: {e}"))
        })?;
        let ek_roots = load_pool(&config.endorsement_ca_path).map_err(|e| {
            PluginError::invalid_argument(format!("unable to load endorsement trust bundle: {e}"))
        })?;
        Ok(Self {
            trust_domain,
            devid_roots,
            ek_roots,
            now,
            rng,
        })
    }

    fn random(&self, n: usize) -> PluginResult<Vec<u8>> {
        let mut v = vec![0u8; n];
        self.rng
            .fill(&mut v)
            .map_err(|_| PluginError::internal("unable to generate challenge: no randomness"))?;
        Ok(v)
    }

    /// Verifies the TPM residency evidence and builds the credential-activation challenge;
    /// returns it with the nonce it hides.
    fn verify_residency(
        &self,
        data: &AttestationRequest,
    ) -> PluginResult<(CredActivation, Vec<u8>)> {
        if data.ak_pub.is_empty() {
            return Err(invalid("missing attestation key public blob"));
        }
        if data.devid_pub.is_empty() {
            return Err(invalid("missing DevID key public blob"));
        }
        if data.ek_cert.is_empty() {
            return Err(invalid("missing endorsement certificate"));
        }
        if data.ek_pub.is_empty() {
            return Err(invalid("missing endorsement key public blob"));
        }
        let (_, ek_cert) = X509Certificate::from_der(&data.ek_cert)
            .map_err(|e| invalid(format!("cannot parse endorsement certificate: {e}")))?;
        let devid_pub = Public::decode(&data.devid_pub)
            .map_err(|e| invalid(format!("cannot decode DevID key public blob: {e}")))?;
        let ak_pub = Public::decode(&data.ak_pub)
            .map_err(|e| invalid(format!("cannot decode attestation key public blob: {e}")))?;
        let ek_pub = Public::decode(&data.ek_pub)
            .map_err(|_| invalid("cannot decode endorsement key public blob"))?;
        verify_eks_match(&ek_cert, &ek_pub).map_err(|e| {
            invalid(format!(
                "public key in EK certificate differs from public key created via EK template: {e}"
            ))
        })?;
        x509svid::verify_x509_path(&data.ek_cert, &[], &self.ek_roots, (self.now)()).map_err(
            |e| {
                invalid(format!(
                    "cannot verify EK signature: endorsement certificate verification failed: {e}"
                ))
            },
        )?;
        verify_certification(
            &ak_pub,
            &devid_pub,
            &data.certified_devid,
            &data.certification_signature,
        )
        .map_err(|e| {
            invalid(format!(
                "cannot verify that DevID is in the same TPM than AK: {e}"
            ))
        })?;

        let internal = |e: String| {
            PluginError::internal(format!(
                "cannot generate credential activation challenge: {e}"
            ))
        };
        let ak_name = ak_pub
            .name()
            .map_err(|e| internal(format!("cannot extract name from AK public: {e}")))?;
        let nonce_len = tpm2::hash_alg(ek_pub.name_alg)
            .map_err(|e| internal(e.to_string()))?
            .output_len();
        let nonce = self.random(nonce_len)?;
        let sym_bytes = usize::from(ek_pub.sym_bits) / 8;
        if sym_bytes == 0 {
            return Err(internal("unsupported algorithm".into()));
        }
        let seed = self.random(sym_bytes)?;
        let cred = tpm2::make_credential(&ak_name, ek_cert.public_key().raw, &seed, &nonce)
            .map_err(internal)?;
        Ok((
            CredActivation {
                credential: cred.id_object,
                secret: cred.secret,
            },
            nonce,
        ))
    }
}

fn invalid(msg: impl Into<String>) -> PluginError {
    PluginError::invalid_argument(msg)
}

/// The EK certificate's RSA key must be the EK the agent created.
fn verify_eks_match(cert: &X509Certificate<'_>, ek: &Public) -> Result<(), String> {
    let key = PublicKey::from_parsed_spki(cert.public_key())
        .map_err(|_| "key from certificate is not an RSA key".to_string())?;
    if !matches!(key.kind(), PublicKeyKind::Rsa { .. }) {
        return Err("key from certificate is not an RSA key".into());
    }
    let Some((n, e)) = ek.rsa() else {
        return Err("key from template is not an RSA key".into());
    };
    let (cert_n, cert_e) = rsa_components(cert)?;
    if strip(&cert_e) != strip(&e) {
        return Err("exponent mismatch".into());
    }
    if strip(&cert_n) != strip(n) {
        return Err("modulus mismatch".into());
    }
    Ok(())
}

fn strip(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != 0).unwrap_or(v.len());
    &v[start..]
}

fn rsa_components(cert: &X509Certificate<'_>) -> Result<(Vec<u8>, Vec<u8>), String> {
    match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
            Ok((rsa.modulus.to_vec(), rsa.exponent.to_vec()))
        }
        _ => Err("key from certificate is not an RSA key".into()),
    }
}

/// The AK's signature over the certification, and the certified name is the DevID key's.
fn verify_certification(
    ak: &Public,
    devid: &Public,
    attest: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    let Some((n, e)) = ak.rsa() else {
        return Err("only RSA keys are supported".into());
    };
    let scheme = ak.signing_scheme()?;
    let params: &'static signature::RsaParameters = match scheme.hash {
        tpm2::alg::SHA1 => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        tpm2::alg::SHA256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        tpm2::alg::SHA384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        tpm2::alg::SHA512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        other => return Err(format!("unsupported hash algorithm 0x{other:04x}")),
    };
    let mut r = Reader::new(sig);
    let sig = match Signature::decode(&mut r).map_err(|e| e.to_string())? {
        Signature::Rsa { sig, .. } => sig,
        Signature::Ecc { .. } => return Err("signature is not an RSA signature".into()),
    };
    RsaPublicKeyComponents { n, e: e.as_slice() }
        .verify(params, attest, &sig)
        .map_err(|_| "crypto/rsa: verification error".to_string())?;
    let name = tpm2::certified_name(attest)?;
    if name.len() < 2 {
        return Err("Name doesn't have a Digest, can't compare to Public".into());
    }
    let expected = devid.name_digest().map_err(|e| e.to_string())?;
    if name[2..] != expected[..] {
        return Err("certify failed".into());
    }
    Ok(())
}

/// The DevID key's signature over the nonce: PKCS#1 v1.5 (RSA) or ASN.1 ECDSA, SHA-256.
fn verify_devid_challenge(key: &PublicKey, nonce: &[u8], sig: &[u8]) -> Result<(), String> {
    let alg: &'static dyn signature::VerificationAlgorithm = match key.kind() {
        PublicKeyKind::Rsa { .. } => &signature::RSA_PKCS1_2048_8192_SHA256,
        PublicKeyKind::Ec(Curve::P256) => &signature::ECDSA_P256_SHA256_ASN1,
        PublicKeyKind::Ec(Curve::P384) => &signature::ECDSA_P384_SHA256_ASN1,
        PublicKeyKind::Ec(Curve::P521) => &signature::ECDSA_P521_SHA256_ASN1,
    };
    signature::UnparsedPublicKey::new(alg, key.spki_der())
        .verify(nonce, sig)
        .map_err(|_| match key.kind() {
            PublicKeyKind::Rsa { .. } => "crypto/rsa: verification error".to_string(),
            PublicKeyKind::Ec(_) => "x509: ECDSA verification failure".to_string(),
        })
}

fn common_name(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[async_trait]
impl ServerNodeAttestor for TpmDevIdServer {
    async fn attest(
        &self,
        payload: Vec<u8>,
        challenger: &mut dyn Challenger,
    ) -> PluginResult<AttestedAgent> {
        if payload.is_empty() {
            return Err(invalid("missing attestation payload"));
        }
        let data: AttestationRequest = serde_json::from_slice(&payload)
            .map_err(|e| invalid(format!("unable to unmarshall attestation data: {e}")))?;
        let Some((leaf_der, intermediates)) = data.devid_cert.split_first() else {
            return Err(invalid("no DevID certificate to attest"));
        };
        let (_, leaf) = X509Certificate::from_der(leaf_der)
            .map_err(|e| invalid(format!("unable to parse DevID certificate: {e}")))?;
        for (i, der) in intermediates.iter().enumerate() {
            X509Certificate::from_der(der).map_err(|e| {
                invalid(format!(
                    "unable to parse DevID intermediate certificate {i}: {e}"
                ))
            })?;
        }
        let chain =
            x509svid::verify_x509_path(leaf_der, intermediates, &self.devid_roots, (self.now)())
                .map_err(|e| {
                    invalid(format!(
                        "unable to verify DevID signature: verification failed: {e}"
                    ))
                })?;
        let devid_key = PublicKey::from_parsed_spki(leaf.public_key())
            .map_err(|e| invalid(format!("devID challenge verification failed: {e}")))?;

        let devid_nonce = self.random(DEVID_NONCE_LEN)?;
        let (cred, cred_nonce) = self.verify_residency(&data)?;
        let challenge = serde_json::to_vec(&ChallengeRequest {
            devid: devid_nonce.clone(),
            cred_activation: Some(cred),
        })
        .map_err(|e| PluginError::internal(format!("unable to marshal challenges data: {e}")))?;
        let reply = challenger.challenge(challenge).await?;
        let response: ChallengeResponse = serde_json::from_slice(&reply)
            .map_err(|e| invalid(format!("unable to unmarshall challenges response: {e}")))?;
        verify_devid_challenge(&devid_key, &devid_nonce, &response.devid)
            .map_err(|e| invalid(format!("devID challenge verification failed: {e}")))?;
        if !constant_time_eq(&cred_nonce, &response.cred_activation) {
            return Err(invalid(
                "credential activation failed: nonces are different",
            ));
        }

        let agent_id = self
            .trust_domain
            .id_with_path(&format!(
                "/spire/agent/{PLUGIN_NAME}/{}",
                fingerprint(leaf_der)
            ))
            .map_err(|e| PluginError::internal(format!("failed to create agent ID: {e}")))?;
        let mut selector_values = Vec::new();
        if let Some(cn) = common_name(leaf.subject()) {
            selector_values.push(format!("subject:cn:{cn}"));
        }
        if let Some(cn) = common_name(leaf.issuer()) {
            selector_values.push(format!("issuer:cn:{cn}"));
        }
        for der in &chain {
            let fp = format!("ca:fingerprint:{}", fingerprint(der));
            if !selector_values.contains(&fp) {
                selector_values.push(fp);
            }
        }
        Ok(AttestedAgent {
            agent_id,
            selector_values,
            can_reattest: true,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;

//! The agent half of `tpm_devid` (SPIRE's pkg/agent/plugin/nodeattestor/tpmdevid).
//!
//! Per attestation, as SPIRE: open the TPM, load the DevID key blobs under the SRK
//! (recreated from `SRKTemplateHighRSA`/`ECC` with a random password), create and load an
//! attestation key under the RSA SRK, create the RSA EK, read the EK certificate from NV
//! index 0x01c00002, certify the DevID key with the AK, send all of it; then sign the
//! server's nonce with the DevID key and activate the server's credential with the EK.

use std::fs;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use spiffe_core::x509svid;
use spire_plugin::{AgentNodeAttestor, AttestationExchange, PluginError, PluginResult};

use crate::device::{self, Tpm, TpmError};
use crate::tpm2::{KeyParams, Public, Reader, Signature, alg};
use crate::wire::{AttestationRequest, ChallengeRequest, ChallengeResponse};

/// NV index of the RSA EK certificate (TCG EK Credential Profile).
const EK_CERT_INDEX_RSA: u32 = 0x01c0_0002;
const RANDOM_PASSWORD_LEN: usize = 32;
/// Where SPIRE looks for a TPM when `tpm_device_path` is not set.
const BASE_TPM_DIR: &str = "/dev";

/// `plugin_data` of the agent's `tpm_devid` NodeAttestor.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AgentConfig {
    /// DevID private blob (`TPM2B_PRIVATE` contents).
    #[serde(default)]
    pub devid_priv_path: String,
    /// DevID public blob (`TPMT_PUBLIC`).
    #[serde(default)]
    pub devid_pub_path: String,
    /// DevID certificate (PEM; intermediates may follow).
    #[serde(default)]
    pub devid_cert_path: String,
    /// The DevID key's authorization value.
    #[serde(default)]
    pub devid_password: String,
    /// The owner hierarchy's authorization value.
    #[serde(default)]
    pub owner_hierarchy_password: String,
    /// The endorsement hierarchy's authorization value.
    #[serde(default)]
    pub endorsement_hierarchy_password: String,
    /// TPM device file or unix socket; autodetected under /dev when empty.
    #[serde(default)]
    pub tpm_device_path: String,
}

#[derive(Clone)]
struct Passwords {
    devid: Vec<u8>,
    owner: Vec<u8>,
    endorsement: Vec<u8>,
}

/// The agent half of `tpm_devid`.
pub struct TpmDevIdAgent {
    device: PathBuf,
    devid_cert: Vec<Vec<u8>>,
    devid_pub: Vec<u8>,
    devid_priv: Vec<u8>,
    passwords: Passwords,
}

impl std::fmt::Debug for TpmDevIdAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmDevIdAgent")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// SPIRE's autodetection: the single `/dev/tpmrm<N>`, else the single `/dev/tpm<N>`.
pub fn autodetect_tpm_path(base: &Path) -> Result<PathBuf, String> {
    let names: Vec<String> = fs::read_dir(base)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for prefix in ["tpmrm", "tpm"] {
        let found: Vec<&String> = names
            .iter()
            .filter(|n| {
                n.rfind(|c: char| !c.is_ascii_digit())
                    .map(|i| {
                        n[..=i].ends_with(prefix)
                            && i + 1 < n.len()
                            && (prefix == "tpmrm" || !n[..=i].ends_with("tpmrm"))
                    })
                    .unwrap_or(false)
            })
            .collect();
        match found.as_slice() {
            [] => continue,
            [one] => return Ok(base.join(one)),
            _ => return Err("more than one possible TPM device was found".into()),
        }
    }
    Err("not found".into())
}

impl TpmDevIdAgent {
    /// Validates the configuration and loads the DevID files (SPIRE's `Configure`).
    pub fn new(config: &AgentConfig) -> PluginResult<Self> {
        let mut missing = Vec::new();
        if config.devid_cert_path.is_empty() {
            missing.push("invalid configuration: devid_cert_path is required");
        }
        if config.devid_priv_path.is_empty() {
            missing.push("invalid configuration: devid_priv_path is required");
        }
        if config.devid_pub_path.is_empty() {
            missing.push("invalid configuration: devid_pub_path is required");
        }
        if !missing.is_empty() {
            return Err(PluginError::invalid_argument(missing.join(", ")));
        }
        let device = if config.tpm_device_path.is_empty() {
            autodetect_tpm_path(Path::new(BASE_TPM_DIR))
                .map_err(|e| PluginError::internal(format!("tpm autodetection failed: {e}")))?
        } else {
            PathBuf::from(&config.tpm_device_path)
        };
        let files = |e: String| PluginError::internal(format!("unable to load DevID files: {e}"));
        let text = fs::read_to_string(&config.devid_cert_path)
            .map_err(|e| files(format!("cannot load certificate(s): {e}")))?;
        let devid_cert = x509svid::parse_pem_certificates(&text)
            .map_err(|e| files(format!("cannot load certificate(s): {e}")))?;
        if devid_cert.is_empty() {
            return Err(files(
                "cannot load certificate(s): no certificates found".into(),
            ));
        }
        let devid_priv = fs::read(&config.devid_priv_path)
            .map_err(|e| files(format!("cannot load private key: {e}")))?;
        let devid_pub = fs::read(&config.devid_pub_path)
            .map_err(|e| files(format!("cannot load public key: {e}")))?;
        Ok(Self {
            device,
            devid_cert,
            devid_pub,
            devid_priv,
            passwords: Passwords {
                devid: config.devid_password.as_bytes().to_vec(),
                owner: config.owner_hierarchy_password.as_bytes().to_vec(),
                endorsement: config.endorsement_hierarchy_password.as_bytes().to_vec(),
            },
        })
    }
}

/// An attestation in progress: the TPM with the DevID key, AK and EK loaded.
struct Session {
    tpm: Tpm,
    devid: Option<u32>,
    devid_hash: u16,
    ak: Option<u32>,
    ek: Option<u32>,
    ak_password: Vec<u8>,
    ak_pub: Vec<u8>,
    ek_pub: Vec<u8>,
    passwords: Passwords,
}

impl Drop for Session {
    fn drop(&mut self) {
        for h in [self.devid.take(), self.ak.take(), self.ek.take()]
            .into_iter()
            .flatten()
        {
            if let Err(e) = self.tpm.flush(h) {
                tracing::warn!(handle = format!("0x{h:08x}"), error = %e, "Failed to flush TPM handle");
            }
        }
    }
}

fn random_password() -> Result<Vec<u8>, String> {
    let mut v = vec![0u8; RANDOM_PASSWORD_LEN];
    SystemRandom::new()
        .fill(&mut v)
        .map_err(|_| "cannot generate random password".to_string())?;
    Ok(v)
}

impl Session {
    fn open(
        path: &Path,
        devid_pub: &[u8],
        devid_priv: &[u8],
        passwords: Passwords,
    ) -> Result<Self, String> {
        let tpm = Tpm::open(path).map_err(|e| format!("cannot open TPM at {path:?}: {e}"))?;
        let mut s = Session {
            tpm,
            devid: None,
            devid_hash: alg::NULL,
            ak: None,
            ek: None,
            ak_password: Vec::new(),
            ak_pub: Vec::new(),
            ek_pub: Vec::new(),
            passwords,
        };
        let srk_password = random_password()
            .map_err(|e| format!("cannot generate random password for storage root key: {e}"))?;
        let public = Public::decode(devid_pub)
            .map_err(|e| format!("cannot load DevID key on TPM: tpm2.DecodePublic failed: {e}"))?;
        let scheme = public
            .signing_scheme()
            .map_err(|e| format!("cannot load DevID key on TPM: {e}"))?;
        if scheme.hash == alg::NULL {
            return Err(
                "cannot load DevID key on TPM: signature hash algorithm is NULL".to_string(),
            );
        }
        s.devid_hash = scheme.hash;
        let is_rsa = matches!(public.params, KeyParams::Rsa { .. });
        let srk_template = if is_rsa {
            device::srk_template_rsa()
        } else {
            device::srk_template_ecc()
        };
        let owner = s.passwords.owner.clone();
        let srk = s
            .tpm
            .create_primary(device::RH_OWNER, &owner, &srk_password, &srk_template)
            .map_err(|e| {
                format!("cannot load DevID key on TPM: tpm2.CreatePrimaryEx failed: {e}")
            })?;
        let loaded = s.tpm.load(srk.handle, &srk_password, devid_pub, devid_priv);
        let srk_handle = if is_rsa {
            srk.handle
        } else {
            s.flush_quietly(srk.handle);
            0
        };
        match loaded {
            Ok(h) => s.devid = Some(h),
            Err(e) => {
                if srk_handle != 0 {
                    s.flush_quietly(srk_handle);
                }
                return Err(format!(
                    "cannot load DevID key on TPM: tpm2.Load failed: {e}"
                ));
            }
        }
        // The AK lives under the RSA SRK (reused when the DevID key is RSA).
        let srk_handle = if srk_handle != 0 {
            srk_handle
        } else {
            s.tpm
                .create_primary(
                    device::RH_OWNER,
                    &owner,
                    &srk_password,
                    &device::srk_template_rsa(),
                )
                .map_err(|e| format!("cannot create attestation key: failed to create SRK: {e}"))?
                .handle
        };
        let ak = s.make_ak(srk_handle, &srk_password);
        s.flush_quietly(srk_handle);
        ak?;
        let endorsement = s.passwords.endorsement.clone();
        let ek = s
            .tpm
            .create_primary(
                device::RH_ENDORSEMENT,
                &endorsement,
                &[],
                &device::ek_template_rsa(),
            )
            .map_err(|e| format!("cannot create endorsement key: {e}"))?;
        s.ek = Some(ek.handle);
        s.ek_pub = ek.public;
        Ok(s)
    }

    fn make_ak(&mut self, srk: u32, srk_password: &[u8]) -> Result<(), String> {
        self.ak_password = random_password()
            .map_err(|e| format!("cannot generate random password for attesation key: {e}"))?;
        let ak_password = self.ak_password.clone();
        let created = self
            .tpm
            .create(srk, srk_password, &ak_password, &device::ak_template_rsa())
            .map_err(|e| format!("cannot create attestation key: failed to create AK: {e}"))?;
        let handle = self
            .tpm
            .load(srk, srk_password, &created.public, &created.private)
            .map_err(|e| format!("cannot load attestation key: tpm2.Load failed: {e}"))?;
        self.ak = Some(handle);
        self.ak_pub = created.public;
        Ok(())
    }

    fn flush_quietly(&mut self, handle: u32) {
        if let Err(e) = self.tpm.flush(handle) {
            tracing::warn!(handle = format!("0x{handle:08x}"), error = %e, "Failed to flush TPM handle");
        }
    }

    fn ek_cert(&mut self) -> Result<Vec<u8>, String> {
        let data = self
            .tpm
            .nv_read(EK_CERT_INDEX_RSA)
            .map_err(|e| format!("failed to read NV index {EK_CERT_INDEX_RSA:08x}: {e}"))?;
        let len = der_len(&data).ok_or_else(|| {
            format!("failed to unmarshall certificate read from {EK_CERT_INDEX_RSA:08x}")
        })?;
        Ok(data[..len].to_vec())
    }

    fn handles(&self) -> Result<(u32, u32, u32), String> {
        match (self.devid, self.ak, self.ek) {
            (Some(d), Some(a), Some(e)) => Ok((d, a, e)),
            _ => Err("TPM session is not open".into()),
        }
    }

    fn certify(&mut self) -> Result<(Vec<u8>, Vec<u8>), String> {
        let (devid, ak, _) = self.handles()?;
        let devid_pw = self.passwords.devid.clone();
        let ak_pw = self.ak_password.clone();
        self.tpm
            .certify(devid, &devid_pw, ak, &ak_pw)
            .map_err(|e| format!("tpm2.Certify failed: {e}"))
    }

    fn sign_devid(&mut self, nonce: &[u8]) -> Result<Vec<u8>, String> {
        let (devid, _, _) = self.handles()?;
        let pw = self.passwords.devid.clone();
        let raw = self
            .tpm
            .sign(devid, &pw, self.devid_hash, nonce)
            .map_err(|e| format!("failed to sign nonce: {e}"))?;
        match Signature::decode(&mut Reader::new(&raw))
            .map_err(|e| format!("failed to sign nonce: {e}"))?
        {
            Signature::Rsa { sig, .. } => Ok(sig),
            Signature::Ecc { r, s, .. } => Ok(ecdsa_der(&r, &s)),
        }
    }

    fn activate(&mut self, credential: &[u8], secret: &[u8]) -> Result<Vec<u8>, String> {
        let (_, ak, ek) = self.handles()?;
        let endorsement = self.passwords.endorsement.clone();
        let session = self
            .tpm
            .ek_policy_session(&endorsement)
            .map_err(|e| e.to_string())?;
        let ak_pw = self.ak_password.clone();
        self.tpm
            .activate_credential(ak, &ak_pw, ek, session, credential, secret)
            .map_err(|e: TpmError| format!("failed to activate credential: {e}"))
    }
}

/// Length of the DER element at the start of `data` (the EK certificate NV index may hold
/// trailing padding).
fn der_len(data: &[u8]) -> Option<usize> {
    let first = *data.get(1)?;
    let (header, body) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in data.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (2 + n, len)
    };
    let total = header.checked_add(body)?;
    (total <= data.len()).then_some(total)
}

/// DER `ECDSA-Sig-Value` of big-endian r and s.
fn ecdsa_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn int(v: &[u8]) -> Vec<u8> {
        let start = v.iter().position(|&b| b != 0).unwrap_or(v.len());
        let mut body = v[start..].to_vec();
        if body.first().is_none_or(|b| b & 0x80 != 0) {
            body.insert(0, 0);
        }
        let mut out = vec![0x02, body.len() as u8];
        out.extend(body);
        out
    }
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30];
    if body.len() >= 0x80 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend(body);
    out
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> PluginResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PluginError::internal(format!("TPM task failed: {e}")))
}

#[async_trait]
impl AgentNodeAttestor for TpmDevIdAgent {
    async fn attest(&self, exchange: &mut dyn AttestationExchange) -> PluginResult<()> {
        let (device, devid_pub, devid_priv, passwords) = (
            self.device.clone(),
            self.devid_pub.clone(),
            self.devid_priv.clone(),
            self.passwords.clone(),
        );
        let prepared = blocking(move || -> PluginResult<_> {
            let mut s =
                Session::open(&device, &devid_pub, &devid_priv, passwords).map_err(|e| {
                    PluginError::internal(format!("unable to start a new TPM session: {e}"))
                })?;
            let ek_cert = s.ek_cert().map_err(|e| {
                PluginError::internal(format!("unable to get endorsement certificate: {e}"))
            })?;
            let (certified, signature) = s
                .certify()
                .map_err(|e| PluginError::internal(format!("unable to certify DevID key: {e}")))?;
            Ok((s, ek_cert, certified, signature))
        })
        .await??;
        let (mut session, ek_cert, certified, signature) = prepared;
        let payload = serde_json::to_vec(&AttestationRequest {
            devid_cert: self.devid_cert.clone(),
            devid_pub: self.devid_pub.clone(),
            ek_cert,
            ek_pub: session.ek_pub.clone(),
            ak_pub: session.ak_pub.clone(),
            certified_devid: certified,
            certification_signature: signature,
        })
        .map_err(|e| PluginError::internal(format!("unable to marshal attestation data: {e}")))?;
        let sent = exchange.send(payload).await;
        let challenge = match sent {
            Ok(Some(c)) => c,
            Ok(None) => {
                blocking(move || drop(session)).await?;
                return Err(PluginError::internal(
                    "unable to receive challenges: none sent",
                ));
            }
            Err(e) => {
                blocking(move || drop(session)).await?;
                return Err(e);
            }
        };
        let answer = blocking(move || -> PluginResult<ChallengeResponse> {
            let challenges: ChallengeRequest = serde_json::from_slice(&challenge).map_err(|e| {
                PluginError::invalid_argument(format!("unable to unmarshall challenges: {e}"))
            })?;
            let devid = session.sign_devid(&challenges.devid).map_err(|e| {
                PluginError::internal(format!(
                    "unable to solve proof of possession challenge: {e}"
                ))
            })?;
            let Some(cred) = challenges.cred_activation else {
                return Err(PluginError::internal(
                    "received empty credential activation challenge from server",
                ));
            };
            let cred_activation =
                session
                    .activate(&cred.credential, &cred.secret)
                    .map_err(|e| {
                        PluginError::internal(format!(
                            "unable to solve proof of residency challenge: {e}"
                        ))
                    })?;
            drop(session);
            Ok(ChallengeResponse {
                devid,
                cred_activation,
            })
        })
        .await??;
        let bytes = serde_json::to_vec(&answer).map_err(|e| {
            PluginError::internal(format!("unable to marshal challenge response: {e}"))
        })?;
        match exchange.send(bytes).await? {
            None => Ok(()),
            Some(_) => Err(PluginError::internal("unexpected second challenge")),
        }
    }
}

#[cfg(test)]
mod swtpm_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_len_strips_nv_padding() {
        let mut data = vec![0x30, 0x82, 0x01, 0x00];
        data.extend(vec![0xAA; 0x100]);
        data.extend([0xFF; 10]);
        assert_eq!(der_len(&data), Some(0x104));
        assert_eq!(der_len(&[0x30, 0x05, 1]), None);
        assert_eq!(der_len(&[0x30]), None);
    }

    #[test]
    fn autodetect_prefers_tpmrm_and_refuses_ambiguity() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            autodetect_tpm_path(dir.path()).unwrap_err(),
            "not found".to_string()
        );
        fs::write(dir.path().join("tpm0"), b"").unwrap();
        assert_eq!(
            autodetect_tpm_path(dir.path()).unwrap(),
            dir.path().join("tpm0")
        );
        fs::write(dir.path().join("tpmrm0"), b"").unwrap();
        assert_eq!(
            autodetect_tpm_path(dir.path()).unwrap(),
            dir.path().join("tpmrm0")
        );
        fs::write(dir.path().join("tpmrm1"), b"").unwrap();
        assert!(autodetect_tpm_path(dir.path()).is_err());
    }

    #[test]
    fn missing_paths_are_reported_together() {
        let err = TpmDevIdAgent::new(&AgentConfig::default()).unwrap_err();
        assert!(err.to_string().contains("devid_cert_path is required"));
        assert!(err.to_string().contains("devid_pub_path is required"));
    }

    #[test]
    fn ecdsa_der_encodes_minimal_integers() {
        assert_eq!(
            ecdsa_der(&[0, 0x80], &[0x01]),
            vec![0x30, 0x07, 0x02, 0x02, 0x00, 0x80, 0x02, 0x01, 0x01]
        );
    }
}

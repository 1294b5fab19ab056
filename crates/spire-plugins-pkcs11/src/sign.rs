//! Signing with a key in the token. The message is hashed here and the token signs the
//! digest: `CKM_ECDSA` (its raw `r || s` DER-encoded for X.509), `CKM_RSA_PKCS` over a
//! DigestInfo (PKCS#1 v1.5) and `CKM_RSA_PKCS_PSS` — so only the digest crosses into the
//! token, and the hashes are the ones spiffe-core's local keys use: SHA-256 on P-256,
//! SHA-384 on P-384, SHA-256 for RSA certificates, the JWS algorithm's hash otherwise.

use std::sync::Arc;

use aws_lc_rs::digest;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::MechanismType;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::object::ObjectHandle;
use parking_lot::Mutex;
use spiffe_core::keys::{Curve, PublicKeyKind};
use spiffe_core::{JwsAlgorithm, PublicKey};
use spire_plugin::{ManagedKey, PluginResult, SignFuture, SignatureKind, Signer};

use crate::error::Pkcs11Error;
use crate::objects::{StoredKey, find_private};
use crate::token::{CallExt as _, OpError, SharedToken};

/// DigestInfo prefixes (RFC 8017 §9.2, note 1).
const SHA256_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const SHA384_INFO: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
const SHA512_INFO: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn digest(self, msg: &[u8]) -> Vec<u8> {
        let alg = match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
            Hash::Sha512 => &digest::SHA512,
        };
        digest::digest(alg, msg).as_ref().to_vec()
    }

    fn digest_info(self, msg: &[u8]) -> Vec<u8> {
        let prefix = match self {
            Hash::Sha256 => SHA256_INFO,
            Hash::Sha384 => SHA384_INFO,
            Hash::Sha512 => SHA512_INFO,
        };
        let mut out = prefix.to_vec();
        out.extend(self.digest(msg));
        out
    }

    fn pss(self) -> PkcsPssParams {
        let (hash_alg, mgf, len) = match self {
            Hash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256, 32u64),
            Hash::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384, 48),
            Hash::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512, 64),
        };
        PkcsPssParams {
            hash_alg,
            mgf,
            s_len: len.into(),
        }
    }
}

/// What the token is asked to do for one signature.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// `CKM_ECDSA` over the digest; DER-encode the answer when `der`.
    Ecdsa {
        digest: Vec<u8>,
        coordinate_len: usize,
        der: bool,
    },
    /// `CKM_RSA_PKCS` over a DigestInfo.
    RsaPkcs1 { digest_info: Vec<u8> },
    /// `CKM_RSA_PKCS_PSS` over the digest.
    RsaPss { digest: Vec<u8>, hash: Hash },
}

fn plan(kind: PublicKeyKind, msg: &[u8], sig: SignatureKind) -> Result<Plan, Pkcs11Error> {
    let mismatch = |alg: &str| Pkcs11Error::AlgorithmMismatch {
        key: kind.to_string(),
        alg: alg.to_string(),
    };
    match (kind, sig) {
        (PublicKeyKind::Ec(curve), SignatureKind::X509) => {
            let hash = match curve {
                Curve::P256 => Hash::Sha256,
                Curve::P384 => Hash::Sha384,
                Curve::P521 => return Err(mismatch("X.509")),
            };
            Ok(Plan::Ecdsa {
                digest: hash.digest(msg),
                coordinate_len: curve.coordinate_len(),
                der: true,
            })
        }
        (PublicKeyKind::Ec(curve), SignatureKind::Jws(alg)) => {
            let hash = match (curve, alg) {
                (Curve::P256, JwsAlgorithm::ES256) => Hash::Sha256,
                (Curve::P384, JwsAlgorithm::ES384) => Hash::Sha384,
                _ => return Err(mismatch(alg.as_str())),
            };
            Ok(Plan::Ecdsa {
                digest: hash.digest(msg),
                coordinate_len: curve.coordinate_len(),
                der: false,
            })
        }
        (PublicKeyKind::Rsa { .. }, SignatureKind::X509) => Ok(Plan::RsaPkcs1 {
            digest_info: Hash::Sha256.digest_info(msg),
        }),
        (PublicKeyKind::Rsa { .. }, SignatureKind::Jws(alg)) => {
            let pkcs1 = |h: Hash| Plan::RsaPkcs1 {
                digest_info: h.digest_info(msg),
            };
            let pss = |h: Hash| Plan::RsaPss {
                digest: h.digest(msg),
                hash: h,
            };
            match alg {
                JwsAlgorithm::RS256 => Ok(pkcs1(Hash::Sha256)),
                JwsAlgorithm::RS384 => Ok(pkcs1(Hash::Sha384)),
                JwsAlgorithm::RS512 => Ok(pkcs1(Hash::Sha512)),
                JwsAlgorithm::PS256 => Ok(pss(Hash::Sha256)),
                JwsAlgorithm::PS384 => Ok(pss(Hash::Sha384)),
                JwsAlgorithm::PS512 => Ok(pss(Hash::Sha512)),
                _ => Err(mismatch(alg.as_str())),
            }
        }
    }
}

/// `r || s` (each `len` bytes) as the DER `ECDSA-Sig-Value` X.509 wants.
fn ecdsa_der(raw: &[u8], len: usize) -> Option<Vec<u8>> {
    if raw.len() != 2 * len {
        return None;
    }
    let int = |v: &[u8]| {
        let start = v.iter().position(|&b| b != 0).unwrap_or(v.len() - 1);
        let v = &v[start..];
        let mut out = Vec::with_capacity(v.len() + 3);
        out.push(0x02);
        let pad = v[0] & 0x80 != 0;
        der_len(&mut out, v.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    };
    let r = int(&raw[..len]);
    let s = int(&raw[len..]);
    let mut out = vec![0x30];
    der_len(&mut out, r.len() + s.len());
    out.extend(r);
    out.extend(s);
    Some(out)
}

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        out.push(0x81);
        out.push(len as u8);
    }
}

/// A key in the token, signing through the token's sessions.
pub struct Pkcs11Signer(Arc<Inner>);

struct Inner {
    token: SharedToken,
    stored: StoredKey,
    info: ManagedKey,
    /// The private key's handle and the pool epoch it was found in.
    handle: Mutex<Option<(u64, ObjectHandle)>>,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("key_id", &self.0.info.id)
            .field("label", &self.0.stored.label)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Signer {
    pub(crate) fn new(token: SharedToken, stored: StoredKey) -> Self {
        let info = ManagedKey {
            id: stored.key_id.clone(),
            key_type: stored.key_type,
            fingerprint: hex::encode(digest::digest(
                &digest::SHA256,
                stored.public_key.spki_der(),
            )),
            public_key: stored.public_key.clone(),
        };
        Self(Arc::new(Inner {
            token,
            stored,
            info,
            handle: Mutex::new(None),
        }))
    }

    /// What the KeyManager reports for this key.
    pub(crate) fn info(&self) -> &ManagedKey {
        &self.0.info
    }

    /// The key objects' `CKA_LABEL`.
    pub fn label(&self) -> &str {
        &self.0.stored.label
    }
}

impl Inner {
    fn private_handle(
        &self,
        session: &cryptoki::session::Session,
        epoch: u64,
        refind: bool,
    ) -> Result<ObjectHandle, OpError> {
        if !refind
            && let Some((e, h)) = *self.handle.lock()
            && e == epoch
        {
            return Ok(h);
        }
        let Some(h) = find_private(session, &self.stored.label, &self.stored.ck_id)? else {
            if !self.token.present() {
                return Err(OpError::Ours(Pkcs11Error::Unavailable {
                    token: self.token.name(),
                    detail: "the token is gone".into(),
                }));
            }
            return Err(OpError::Ours(Pkcs11Error::KeyGone {
                label: self.stored.label.clone(),
                token: self.token.name(),
            }));
        };
        *self.handle.lock() = Some((epoch, h));
        Ok(h)
    }

    fn sign(&self, msg: &[u8], kind: SignatureKind) -> Result<Vec<u8>, Pkcs11Error> {
        let plan = plan(self.info.public_key.kind(), msg, kind)?;
        let mechanism = match &plan {
            Plan::Ecdsa { .. } => Mechanism::Ecdsa,
            Plan::RsaPkcs1 { .. } => Mechanism::RsaPkcs,
            Plan::RsaPss { hash, .. } => Mechanism::RsaPkcsPss(hash.pss()),
        };
        let data = match &plan {
            Plan::Ecdsa { digest, .. } | Plan::RsaPss { digest, .. } => digest,
            Plan::RsaPkcs1 { digest_info } => digest_info,
        };
        let raw = self.token.run(|session, epoch, refind| {
            let handle = self.private_handle(session, epoch, refind)?;
            session.sign(&mechanism, handle, data).call("C_Sign")
        })?;
        let Plan::Ecdsa {
            coordinate_len,
            der,
            ..
        } = plan
        else {
            return Ok(raw);
        };
        let malformed = || Pkcs11Error::Call {
            call: "C_Sign",
            token: self.token.name(),
            rv: format!("a malformed ECDSA signature ({} bytes)", raw.len()),
        };
        if raw.len() != 2 * coordinate_len {
            return Err(malformed());
        }
        if der {
            ecdsa_der(&raw, coordinate_len).ok_or_else(malformed)
        } else {
            Ok(raw)
        }
    }
}

impl Signer for Pkcs11Signer {
    fn key_id(&self) -> &str {
        &self.0.info.id
    }

    fn public_key(&self) -> &PublicKey {
        &self.0.info.public_key
    }

    fn sign(&self, message: &[u8], kind: SignatureKind) -> PluginResult<Vec<u8>> {
        self.0.sign(message, kind).map_err(Into::into)
    }

    /// A token may be a device on a bus or across a network: worth signing off the async
    /// workers.
    fn is_remote(&self) -> bool {
        true
    }

    /// Signs on the calling worker thread, first telling a multi-threaded runtime to hand
    /// its other tasks to another worker (`block_in_place`), so a slow token holds up no
    /// one else; on a current-thread runtime, on a blocking thread instead.
    fn sign_async<'a>(&'a self, message: &'a [u8], kind: SignatureKind) -> SignFuture<'a> {
        Box::pin(async move {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return self.sign(message, kind);
            };
            if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                return tokio::task::block_in_place(|| self.sign(message, kind));
            }
            let inner = self.0.clone();
            let message = message.to_vec();
            runtime
                .spawn_blocking(move || inner.sign(&message, kind))
                .await
                .map_err(|e| spire_plugin::PluginError::internal(e.to_string()))?
                .map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn ecdsa_der_encoding() {
        // High bits set: both integers get a zero byte.
        let mut raw = vec![0x80; 32];
        raw.extend(vec![0xff; 32]);
        let der = ecdsa_der(&raw, 32).unwrap();
        assert_eq!(&der[..4], &[0x30, 70, 0x02, 33]);
        assert_eq!(der[4], 0);
        assert_eq!(der.len(), 72);
        // Leading zeros are dropped.
        let mut raw = vec![0; 31];
        raw.push(5);
        raw.extend(vec![0; 32]);
        assert_eq!(
            ecdsa_der(&raw, 32).unwrap(),
            vec![0x30, 6, 0x02, 1, 5, 0x02, 1, 0]
        );
        // P-384 sizes stay below 128 bytes but the long form is right too.
        let mut v = Vec::new();
        der_len(&mut v, 200);
        assert_eq!(v, vec![0x81, 200]);
        assert!(ecdsa_der(&[0; 10], 32).is_none());
    }

    #[test]
    fn the_hash_follows_the_key_and_the_algorithm() {
        let p256 = PublicKeyKind::Ec(Curve::P256);
        let p384 = PublicKeyKind::Ec(Curve::P384);
        let rsa = PublicKeyKind::Rsa { bits: 2048 };
        match plan(p256, b"m", SignatureKind::X509).unwrap() {
            Plan::Ecdsa { digest, der, .. } => {
                assert_eq!(digest.len(), 32);
                assert!(der);
            }
            p => panic!("{p:?}"),
        }
        match plan(p384, b"m", SignatureKind::Jws(JwsAlgorithm::ES384)).unwrap() {
            Plan::Ecdsa { digest, der, .. } => {
                assert_eq!(digest.len(), 48);
                assert!(!der);
            }
            p => panic!("{p:?}"),
        }
        assert!(plan(p384, b"m", SignatureKind::Jws(JwsAlgorithm::ES256)).is_err());
        assert!(plan(rsa, b"m", SignatureKind::Jws(JwsAlgorithm::ES256)).is_err());
        assert!(plan(p256, b"m", SignatureKind::Jws(JwsAlgorithm::RS256)).is_err());
        match plan(rsa, b"m", SignatureKind::X509).unwrap() {
            Plan::RsaPkcs1 { digest_info } => {
                assert_eq!(digest_info.len(), 19 + 32);
                assert_eq!(&digest_info[..19], SHA256_INFO);
            }
            p => panic!("{p:?}"),
        }
        match plan(rsa, b"m", SignatureKind::Jws(JwsAlgorithm::PS384)).unwrap() {
            Plan::RsaPss { digest, hash } => {
                assert_eq!(digest.len(), 48);
                assert_eq!(hash, Hash::Sha384);
            }
            p => panic!("{p:?}"),
        }
    }
}

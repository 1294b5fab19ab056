//! Key objects in the token. A SPIRE key is a private and a public key object sharing
//! `CKA_LABEL` = prefix + SPIRE key ID and a `CKA_ID` of 16 bytes: a big-endian generation
//! counter (one more than the highest under that label) followed by 8 random bytes.
//!
//! Replacing a key generates the new pair first and destroys the older ones after, so a
//! failure (or a crash) in between leaves the old key usable: when several generations are
//! found under one label, the oldest whole pair is the key, the others leftovers that the
//! next generation removes.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use spiffe_core::keys::Curve;
use spiffe_core::{KeyType, PublicKey};

use crate::error::Pkcs11Error;
use crate::token::{CallExt as _, OpError};

/// DER of the P-256 curve OID (`CKA_EC_PARAMS`).
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the P-384 curve OID.
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// A key pair found in (or put into) the token.
#[derive(Debug, Clone)]
pub(crate) struct StoredKey {
    /// SPIRE's key ID (the label without the prefix).
    pub(crate) key_id: String,
    /// `CKA_LABEL`.
    pub(crate) label: String,
    /// `CKA_ID`.
    pub(crate) ck_id: Vec<u8>,
    /// The key type.
    pub(crate) key_type: KeyType,
    /// The public key.
    pub(crate) public_key: PublicKey,
}

/// The generation counter of a `CKA_ID` (0 for IDs not written by us).
fn generation(ck_id: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(ck_id.get(..8).unwrap_or_default()) {
        Ok(b) if ck_id.len() == 16 => u64::from_be_bytes(b),
        _ => 0,
    }
}

fn text(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

struct Found {
    handle: ObjectHandle,
    label: String,
    ck_id: Vec<u8>,
}

/// Private key objects whose label satisfies `wanted`.
fn private_keys(
    session: &Session,
    extra: &[Attribute],
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<Found>, OpError> {
    let mut template = vec![
        Attribute::Token(true),
        Attribute::Class(ObjectClass::PRIVATE_KEY),
    ];
    template.extend_from_slice(extra);
    let handles = session.find_objects(&template).call("C_FindObjects")?;
    let mut out = Vec::new();
    for handle in handles {
        let attrs = session
            .get_attributes(handle, &[AttributeType::Label, AttributeType::Id])
            .call("C_GetAttributeValue")?;
        let mut label = None;
        let mut ck_id = Vec::new();
        for a in attrs {
            match a {
                Attribute::Label(l) => label = text(&l),
                Attribute::Id(id) => ck_id = id,
                _ => {}
            }
        }
        if let Some(label) = label.filter(|l| wanted(l)) {
            out.push(Found {
                handle,
                label,
                ck_id,
            });
        }
    }
    Ok(out)
}

/// Every key under `prefix`, one per SPIRE key ID (the oldest generation when there are
/// leftovers). Keys whose public half cannot be read are skipped with a warning.
pub(crate) fn list(
    session: &Session,
    prefix: &str,
    token: &str,
) -> Result<Vec<StoredKey>, OpError> {
    let mut found = private_keys(session, &[], |l| {
        l.len() > prefix.len() && l.starts_with(prefix)
    })?;
    found.sort_by(|a, b| {
        a.label
            .cmp(&b.label)
            .then(generation(&a.ck_id).cmp(&generation(&b.ck_id)))
    });
    let mut out: Vec<StoredKey> = Vec::new();
    for f in found {
        if out.last().is_some_and(|k| k.label == f.label) {
            tracing::warn!(label = %f.label, "Ignoring a newer, unfinished generation of a key; the next rotation removes it");
            continue;
        }
        match public_key(session, f.handle, &f.label, &f.ck_id, token) {
            Ok(public_key) => {
                let Some(key_type) = public_key.key_type() else {
                    tracing::warn!(label = %f.label, kind = %public_key.kind(), "Ignoring a key of a type SPIRE does not use");
                    continue;
                };
                out.push(StoredKey {
                    key_id: f.label[prefix.len()..].to_string(),
                    label: f.label,
                    ck_id: f.ck_id,
                    key_type,
                    public_key,
                });
            }
            Err(OpError::Ours(e)) => {
                tracing::warn!(label = %f.label, error = %e, "Ignoring an unusable key object");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The private key object of a stored key, if it is still there.
pub(crate) fn find_private(
    session: &Session,
    label: &str,
    ck_id: &[u8],
) -> Result<Option<ObjectHandle>, OpError> {
    let handles = session
        .find_objects(&[
            Attribute::Token(true),
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(ck_id.to_vec()),
        ])
        .call("C_FindObjects")?;
    Ok(handles.first().copied())
}

/// Reads the public key of a pair: from its public key object, or for RSA from the private
/// key object's public attributes when there is no public object.
fn public_key(
    session: &Session,
    private: ObjectHandle,
    label: &str,
    ck_id: &[u8],
    token: &str,
) -> Result<PublicKey, OpError> {
    let bad = |reason: String| {
        OpError::Ours(Pkcs11Error::BadKey {
            label: label.to_string(),
            token: token.to_string(),
            reason,
        })
    };
    let public = session
        .find_objects(&[
            Attribute::Token(true),
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(ck_id.to_vec()),
        ])
        .call("C_FindObjects")?;
    let object = public.first().copied().unwrap_or(private);
    let kind = session
        .get_attributes(object, &[AttributeType::KeyType])
        .call("C_GetAttributeValue")?;
    let key_type = kind.iter().find_map(|a| match a {
        Attribute::KeyType(t) => Some(*t),
        _ => None,
    });
    match key_type {
        Some(t) if t == CkKeyType::EC => {
            if public.is_empty() {
                return Err(bad("the public key object is missing".into()));
            }
            let attrs = session
                .get_attributes(object, &[AttributeType::EcParams, AttributeType::EcPoint])
                .call("C_GetAttributeValue")?;
            let mut params = None;
            let mut point = None;
            for a in attrs {
                match a {
                    Attribute::EcParams(p) => params = Some(p),
                    Attribute::EcPoint(p) => point = Some(p),
                    _ => {}
                }
            }
            let curve = match params.as_deref() {
                Some(P256_PARAMS) => Curve::P256,
                Some(P384_PARAMS) => Curve::P384,
                _ => return Err(bad("its curve is neither P-256 nor P-384".into())),
            };
            let point = point.ok_or_else(|| bad("no CKA_EC_POINT".into()))?;
            let raw =
                ec_point(&point, curve).ok_or_else(|| bad("malformed CKA_EC_POINT".into()))?;
            let len = curve.coordinate_len();
            PublicKey::from_ec_coordinates(curve, &raw[1..=len], &raw[len + 1..])
                .map_err(|e| bad(e.to_string()))
        }
        Some(t) if t == CkKeyType::RSA => {
            let attrs = session
                .get_attributes(
                    object,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .call("C_GetAttributeValue")?;
            let mut n = None;
            let mut e = None;
            for a in attrs {
                match a {
                    Attribute::Modulus(m) => n = Some(m),
                    Attribute::PublicExponent(x) => e = Some(x),
                    _ => {}
                }
            }
            match (n, e) {
                (Some(n), Some(e)) => {
                    PublicKey::from_rsa_components(&n, &e).map_err(|e| bad(e.to_string()))
                }
                _ => Err(bad("no CKA_MODULUS or CKA_PUBLIC_EXPONENT".into())),
            }
        }
        _ => Err(bad("it is neither an EC nor an RSA key".into())),
    }
}

/// The uncompressed point `04 || x || y` from `CKA_EC_POINT`, which the standard wraps in
/// a DER OCTET STRING (some modules give it bare).
fn ec_point(value: &[u8], curve: Curve) -> Option<Vec<u8>> {
    let want = 1 + 2 * curve.coordinate_len();
    if value.len() == want && value[0] == 4 {
        return Some(value.to_vec());
    }
    // OCTET STRING with a short or one-byte long length.
    let body = match value {
        [0x04, len, rest @ ..] if usize::from(*len) < 0x80 => {
            (usize::from(*len) == rest.len()).then_some(rest)?
        }
        [0x04, 0x81, len, rest @ ..] => (usize::from(*len) == rest.len()).then_some(rest)?,
        _ => return None,
    };
    (body.len() == want && body[0] == 4).then(|| body.to_vec())
}

/// Generates a new pair for `key_id` and removes the older generations under its label.
/// On failure nothing that was there before is removed.
pub(crate) fn generate(
    session: &Session,
    prefix: &str,
    key_id: &str,
    key_type: KeyType,
    token: &str,
) -> Result<StoredKey, OpError> {
    let label = format!("{prefix}{key_id}");
    let older = private_keys(
        session,
        &[Attribute::Label(label.as_bytes().to_vec())],
        |l| l == label,
    )?;
    let next = older
        .iter()
        .map(|f| generation(&f.ck_id))
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    let mut ck_id = next.to_be_bytes().to_vec();
    let mut random = [0u8; 8];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| {
        OpError::Ours(Pkcs11Error::Call {
            call: "random",
            token: token.to_string(),
            rv: "no randomness".into(),
        })
    })?;
    ck_id.extend_from_slice(&random);

    let common = [
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(ck_id.clone()),
    ];
    let mut public = common.to_vec();
    public.extend([Attribute::Private(false), Attribute::Verify(true)]);
    let mut private = common.to_vec();
    private.extend([
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ]);
    let mechanism = match key_type {
        KeyType::EcP256 | KeyType::EcP384 => {
            let params = if key_type == KeyType::EcP256 {
                P256_PARAMS
            } else {
                P384_PARAMS
            };
            public.push(Attribute::EcParams(params.to_vec()));
            Mechanism::EccKeyPairGen
        }
        KeyType::Rsa2048 | KeyType::Rsa4096 => {
            let bits: u64 = if key_type == KeyType::Rsa2048 {
                2048
            } else {
                4096
            };
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    let (pub_handle, priv_handle) = session
        .generate_key_pair(&mechanism, &public, &private)
        .call("C_GenerateKeyPair")?;
    let stored = public_key(session, priv_handle, &label, &ck_id, token).and_then(|public_key| {
        if public_key.key_type() == Some(key_type) {
            Ok(public_key)
        } else {
            Err(OpError::Ours(Pkcs11Error::BadKey {
                label: label.clone(),
                token: token.to_string(),
                reason: format!("the token generated a {} key", public_key.kind()),
            }))
        }
    });
    let public_key = match stored {
        Ok(k) => k,
        Err(e) => {
            let _ = session.destroy_object(priv_handle);
            let _ = session.destroy_object(pub_handle);
            return Err(e);
        }
    };
    // The new pair is in place: remove the older generations, private keys first. Until one
    // is gone a failure undoes the new pair, so the old key stays the key; after that the
    // new pair is the only whole one and stays, and what is left goes with the next
    // generation.
    for (i, old) in older.iter().enumerate() {
        if let Err(e) = session.destroy_object(old.handle).call("C_DestroyObject") {
            if i == 0 {
                let _ = session.destroy_object(priv_handle);
                let _ = session.destroy_object(pub_handle);
                return Err(e);
            }
            tracing::warn!(label = %label, "Unable to remove an older generation of a key; the next rotation removes it");
        }
    }
    match session
        .find_objects(&[
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .call("C_FindObjects")
    {
        Ok(leftovers) => {
            for handle in leftovers {
                if handle != priv_handle
                    && handle != pub_handle
                    && session.destroy_object(handle).is_err()
                {
                    tracing::warn!(label = %label, "Unable to remove an object left by an older generation of a key");
                }
            }
        }
        Err(_) => {
            tracing::warn!(label = %label, "Unable to look for objects left by older generations of a key");
        }
    }
    Ok(StoredKey {
        key_id: key_id.to_string(),
        label,
        ck_id,
        key_type,
        public_key,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn generations_come_from_our_ids_only() {
        let mut id = 7u64.to_be_bytes().to_vec();
        id.extend([1; 8]);
        assert_eq!(generation(&id), 7);
        assert_eq!(generation(b"short"), 0);
        assert_eq!(generation(&[0; 20]), 0);
    }

    #[test]
    fn ec_points_wrapped_or_bare() {
        let mut bare = vec![4u8];
        bare.extend([1u8; 64]);
        assert_eq!(ec_point(&bare, Curve::P256).unwrap(), bare);
        let mut der = vec![0x04, 65];
        der.extend(&bare);
        assert_eq!(ec_point(&der, Curve::P256).unwrap(), bare);
        let mut bare384 = vec![4u8];
        bare384.extend([2u8; 96]);
        let mut der = vec![0x04, 0x61];
        der.extend(&bare384);
        assert_eq!(ec_point(&der, Curve::P384).unwrap(), bare384);
        assert!(ec_point(&der, Curve::P256).is_none());
        assert!(ec_point(&[0x04, 3, 4, 1], Curve::P256).is_none());
        assert!(ec_point(&[], Curve::P256).is_none());
    }
}

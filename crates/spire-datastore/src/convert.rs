//! Conversions between the stored bundle and `spiffe_core::Bundle`.

use spiffe_core::bundle::{JwtAuthority, X509Authority};
use spiffe_core::{Bundle, KeyError, PublicKey};

use crate::model::{JwtSigningKey, RootCa, StoredBundle};

impl From<&Bundle> for StoredBundle {
    fn from(b: &Bundle) -> Self {
        StoredBundle {
            trust_domain: b.trust_domain().clone(),
            root_cas: b
                .x509_authorities
                .iter()
                .map(|a| RootCa {
                    der: a.der.clone(),
                    tainted: a.tainted,
                })
                .collect(),
            jwt_signing_keys: b
                .jwt_authorities
                .iter()
                .map(|a| JwtSigningKey {
                    kid: a.key_id.clone(),
                    pkix: a.public_key.spki_der().to_vec(),
                    not_after: a.expires_at,
                    tainted: a.tainted,
                })
                .collect(),
            refresh_hint: b.refresh_hint.unwrap_or(0),
            sequence_number: b.sequence_number.unwrap_or(0),
        }
    }
}

impl TryFrom<&StoredBundle> for Bundle {
    type Error = KeyError;
    /// Fails when a JWT key is not a key type spiffe-core supports.
    fn try_from(s: &StoredBundle) -> Result<Self, KeyError> {
        let mut b = Bundle::new(s.trust_domain.clone());
        b.x509_authorities = s
            .root_cas
            .iter()
            .map(|c| X509Authority {
                der: c.der.clone(),
                tainted: c.tainted,
            })
            .collect();
        b.jwt_authorities = s
            .jwt_signing_keys
            .iter()
            .map(|k| {
                Ok(JwtAuthority {
                    key_id: k.kid.clone(),
                    public_key: PublicKey::from_spki_der(&k.pkix)?,
                    expires_at: k.not_after,
                    tainted: k.tainted,
                })
            })
            .collect::<Result<_, KeyError>>()?;
        b.refresh_hint = (s.refresh_hint != 0).then_some(s.refresh_hint);
        b.sequence_number = Some(s.sequence_number);
        Ok(b)
    }
}

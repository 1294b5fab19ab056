//! CredentialComposer `uniqueid`: adds an X.500 unique identifier attribute
//! (`x500UniqueIdentifier`, OID 2.5.4.45) to every workload X509-SVID's subject, so that two
//! SVIDs for different SPIFFE IDs never share a subject DN (RFC 5280 wants the subject unique
//! per entity under one issuer). The value is the first 16 bytes of the SHA-256 of the
//! SPIFFE ID's text, as lowercase hex — SPIRE's `x509svid.UniqueIDAttribute`. An attribute
//! with that OID already in the subject is replaced in place; otherwise it is appended.
//! Every other credential passes through unchanged (SPIRE's plugin answers `Unimplemented`
//! for them, which the CA reads as "no change"). The plugin takes no configuration.

use async_trait::async_trait;
use spiffe_core::{PublicKey, SpiffeId};
use spire_plugin::{CredentialComposer, PluginResult, X509SvidAttributes};

/// The plugin's name in `plugins {}`.
pub const PLUGIN_NAME: &str = "uniqueid";

/// `x500UniqueIdentifier`.
pub const UNIQUE_ID_OID: &str = "2.5.4.45";

/// The attribute value for `id`: hex of the first half of SHA-256 over the ID's text.
pub fn unique_id_value(id: &SpiffeId) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.to_string().as_bytes());
    let sum = digest.as_ref();
    hex::encode(&sum[..sum.len() / 2])
}

/// The `uniqueid` composer.
#[derive(Debug, Default, Clone, Copy)]
pub struct UniqueId;

#[async_trait]
impl CredentialComposer for UniqueId {
    async fn compose_workload_x509_svid(
        &self,
        id: &SpiffeId,
        _public_key: &PublicKey,
        mut a: X509SvidAttributes,
    ) -> PluginResult<X509SvidAttributes> {
        let value = unique_id_value(id);
        let names = &mut a.subject.extra_names;
        match names.iter_mut().find(|(oid, _)| oid == UNIQUE_ID_OID) {
            Some(existing) => existing.1 = value,
            None => names.push((UNIQUE_ID_OID.to_string(), value)),
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spire_plugin::DistinguishedName;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn key() -> PublicKey {
        spiffe_core::PrivateKey::generate(spiffe_core::KeyType::EcP256)
            .unwrap()
            .public_key()
            .clone()
    }

    /// SPIRE's own vector (`pkg/common/x509svid/uniqueid_test.go`):
    /// `2.5.4.45=#1320` + hex("c3406f9b12ceb4f9c948318c579b905b").
    #[test]
    fn value_matches_spire_vector() {
        assert_eq!(
            unique_id_value(&id("spiffe://example.org/foo")),
            "c3406f9b12ceb4f9c948318c579b905b"
        );
    }

    #[tokio::test]
    async fn appends_to_workload_subject() {
        let a = X509SvidAttributes {
            subject: DistinguishedName {
                country: vec!["US".into()],
                organization: vec!["SPIRE".into()],
                extra_names: vec![("1.2.3.4".into(), "keep".into())],
                ..Default::default()
            },
            dns_sans: vec!["a.example".into()],
            extra_extensions: vec![],
        };
        let out = UniqueId
            .compose_workload_x509_svid(&id("spiffe://example.org/foo"), &key(), a.clone())
            .await
            .unwrap();
        assert_eq!(out.subject.country, a.subject.country);
        assert_eq!(out.dns_sans, a.dns_sans);
        assert_eq!(
            out.subject.extra_names,
            vec![
                ("1.2.3.4".to_string(), "keep".to_string()),
                (
                    UNIQUE_ID_OID.to_string(),
                    "c3406f9b12ceb4f9c948318c579b905b".to_string()
                ),
            ]
        );
    }

    #[tokio::test]
    async fn replaces_existing_attribute_in_place() {
        let a = X509SvidAttributes {
            subject: DistinguishedName {
                extra_names: vec![
                    (UNIQUE_ID_OID.into(), "old".into()),
                    ("1.2.3.4".into(), "keep".into()),
                ],
                ..Default::default()
            },
            ..Default::default()
        };
        let out = UniqueId
            .compose_workload_x509_svid(&id("spiffe://example.org/bar"), &key(), a)
            .await
            .unwrap();
        assert_eq!(out.subject.extra_names.len(), 2);
        assert_eq!(out.subject.extra_names[0].0, UNIQUE_ID_OID);
        assert_ne!(out.subject.extra_names[0].1, "old");
        assert_eq!(out.subject.extra_names[0].1.len(), 32);
        assert_eq!(out.subject.extra_names[1].1, "keep");
    }

    #[tokio::test]
    async fn other_credentials_pass_through() {
        let a = X509SvidAttributes::default();
        let out = UniqueId
            .compose_agent_x509_svid(&id("spiffe://example.org/agent"), &key(), a.clone())
            .await
            .unwrap();
        assert_eq!(out, a);
        let out = UniqueId.compose_server_x509_svid(a.clone()).await.unwrap();
        assert_eq!(out, a);
        let claims = spire_plugin::JwtClaims::new();
        let out = UniqueId
            .compose_workload_jwt_svid(&id("spiffe://example.org/w"), claims.clone())
            .await
            .unwrap();
        assert_eq!(out, claims);
    }
}

//! Bundles and JWT keys: `spire.plugin.types`.

use spire_plugin::{JwtKey, PluginBundle, X509Authority};
use spire_proto::spire::plugin::types;

/// A bundle as the plugin protocol carries it.
pub fn bundle_to_proto(b: &PluginBundle) -> types::Bundle {
    types::Bundle {
        trust_domain: b.trust_domain.clone(),
        x509_authorities: b.x509_authorities.iter().map(x509_to_proto).collect(),
        jwt_authorities: b.jwt_authorities.iter().map(jwt_key_to_proto).collect(),
        refresh_hint: b.refresh_hint,
        sequence_number: b.sequence_number,
    }
}

/// A bundle from the plugin protocol.
pub fn bundle_from_proto(b: types::Bundle) -> PluginBundle {
    PluginBundle {
        trust_domain: b.trust_domain,
        x509_authorities: b
            .x509_authorities
            .into_iter()
            .map(|c| X509Authority {
                der: c.asn1,
                tainted: c.tainted,
            })
            .collect(),
        jwt_authorities: b
            .jwt_authorities
            .into_iter()
            .map(jwt_key_from_proto)
            .collect(),
        refresh_hint: b.refresh_hint,
        sequence_number: b.sequence_number,
    }
}

fn x509_to_proto(a: &X509Authority) -> types::X509Certificate {
    types::X509Certificate {
        asn1: a.der.clone(),
        tainted: a.tainted,
    }
}

/// A JWT key as the plugin protocol carries it.
pub fn jwt_key_to_proto(k: &JwtKey) -> types::JwtKey {
    types::JwtKey {
        public_key: k.public_key.clone(),
        key_id: k.key_id.clone(),
        expires_at: k.expires_at,
        tainted: k.tainted,
    }
}

/// A JWT key from the plugin protocol.
pub fn jwt_key_from_proto(k: types::JwtKey) -> JwtKey {
    JwtKey {
        public_key: k.public_key,
        key_id: k.key_id,
        expires_at: k.expires_at,
        tainted: k.tainted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_survives_the_round_trip() {
        let b = PluginBundle {
            trust_domain: "example.org".into(),
            x509_authorities: vec![X509Authority {
                der: vec![1, 2, 3],
                tainted: true,
            }],
            jwt_authorities: vec![JwtKey {
                public_key: vec![4, 5],
                key_id: "kid".into(),
                expires_at: 42,
                tainted: false,
            }],
            refresh_hint: 300,
            sequence_number: 7,
        };
        assert_eq!(bundle_from_proto(bundle_to_proto(&b)), b);
    }
}

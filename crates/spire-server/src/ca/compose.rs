//! CredentialComposer plugins applied to what the CA issues, as SPIRE's credential
//! template builder applies them: each composer in configuration order gets the attributes
//! the previous one returned. Without composers nothing here runs.

use std::sync::Arc;

use spiffe_core::{PublicKey, SpiffeId};
use spire_pki::{Extension, Subject};
use spire_plugin::{
    CredentialComposer, DistinguishedName, JwtClaims, PluginError, X509CaAttributes, X509Extension,
    X509SvidAttributes,
};

/// The configured composers.
pub type Composers = Vec<Arc<dyn CredentialComposer>>;

/// Which credential an X509-SVID is.
#[derive(Debug, Clone, Copy)]
pub(super) enum SvidKind<'a> {
    /// The server's own SVID.
    Server,
    /// An agent's SVID.
    Agent(&'a SpiffeId, &'a PublicKey),
    /// A workload's SVID.
    Workload(&'a SpiffeId, &'a PublicKey),
}

fn dn_of(s: &Subject) -> DistinguishedName {
    DistinguishedName {
        country: s.country.clone(),
        organization: s.organization.clone(),
        organizational_unit: s.organizational_unit.clone(),
        locality: s.locality.clone(),
        province: s.province.clone(),
        street_address: s.street_address.clone(),
        postal_code: s.postal_code.clone(),
        serial_number: s.serial_number.clone(),
        common_name: s.common_name.clone(),
        extra_names: s.extra_names.clone(),
    }
}

fn subject_of(d: DistinguishedName) -> Subject {
    Subject {
        country: d.country,
        organization: d.organization,
        organizational_unit: d.organizational_unit,
        locality: d.locality,
        province: d.province,
        street_address: d.street_address,
        postal_code: d.postal_code,
        common_name: d.common_name,
        serial_number: d.serial_number,
        extra_names: d.extra_names,
    }
}

fn extensions_of(e: Vec<X509Extension>) -> Vec<Extension> {
    e.into_iter()
        .map(|x| Extension {
            oid: x.oid,
            critical: x.critical,
            value: x.value,
        })
        .collect()
}

/// An X509-SVID's subject, DNS SANs and extra extensions after every composer.
pub(super) async fn x509_svid(
    composers: &Composers,
    kind: SvidKind<'_>,
    subject: &Subject,
    dns_names: &[String],
) -> Result<(Subject, Vec<String>, Vec<Extension>), PluginError> {
    let mut a = X509SvidAttributes {
        subject: dn_of(subject),
        dns_sans: dns_names.to_vec(),
        extra_extensions: vec![],
    };
    for cc in composers {
        a = match kind {
            SvidKind::Server => cc.compose_server_x509_svid(a).await?,
            SvidKind::Agent(id, key) => cc.compose_agent_x509_svid(id, key, a).await?,
            SvidKind::Workload(id, key) => cc.compose_workload_x509_svid(id, key, a).await?,
        };
    }
    Ok((
        subject_of(a.subject),
        a.dns_sans,
        extensions_of(a.extra_extensions),
    ))
}

/// An X.509 CA's subject and extra extensions (certificate policies included) after every
/// composer.
pub async fn x509_ca(
    composers: &Composers,
    subject: &Subject,
) -> Result<(Subject, Vec<Extension>), PluginError> {
    let mut a = X509CaAttributes {
        subject: dn_of(subject),
        policy_identifiers: vec![],
        extra_extensions: vec![],
    };
    for cc in composers {
        a = cc.compose_server_x509_ca(a).await?;
    }
    let mut extensions = extensions_of(a.extra_extensions);
    if !a.policy_identifiers.is_empty() {
        let policies = spire_pki::certificate_policies(&a.policy_identifiers)
            .map_err(|e| PluginError::new(spire_plugin::Code::Internal, e.to_string()))?;
        extensions.push(policies);
    }
    Ok((subject_of(a.subject), extensions))
}

/// A JWT-SVID's claims after every composer.
pub(super) async fn jwt_svid(
    composers: &Composers,
    id: &SpiffeId,
    mut claims: JwtClaims,
) -> Result<JwtClaims, PluginError> {
    for cc in composers {
        claims = cc.compose_workload_jwt_svid(id, claims).await?;
    }
    Ok(claims)
}

//! An external CredentialComposer behind the trait the built-ins implement
//! (`spire.plugin.server.credentialcomposer.v1.CredentialComposer`). A method the plugin
//! does not implement (`Unimplemented`) leaves its input unchanged, as in SPIRE. JWT claims
//! travel as a `google.protobuf.Struct`, whose numbers are doubles: integral numbers come
//! back as JSON integers, as Go's encoder writes them.

use std::sync::Arc;

use async_trait::async_trait;
use pbjson_types::value::Kind;
use spiffe_core::{PublicKey, SpiffeId};
use spire_plugin::{
    Code, CredentialComposer, DistinguishedName, JwtClaims, PluginError, PluginResult,
    X509CaAttributes, X509Extension, X509SvidAttributes,
};
use spire_proto::spire::plugin::server::credentialcomposer::v1 as ccv1;

use crate::conn::PluginChannel;
use crate::{ExternalPlugin, HostError};

/// The gRPC service a CredentialComposer plugin serves.
pub const SERVICE: &str = "spire.plugin.server.credentialcomposer.v1.CredentialComposer";

type Client = ccv1::credential_composer_client::CredentialComposerClient<PluginChannel>;

/// An external plugin serving the CredentialComposer interface.
#[derive(Debug, Clone)]
pub struct ExternalCredentialComposer {
    plugin: Arc<ExternalPlugin>,
    client: Client,
}

impl ExternalCredentialComposer {
    /// Binds a loaded plugin.
    pub fn bind(plugin: Arc<ExternalPlugin>) -> Result<Self, HostError> {
        let channel = plugin.bind(SERVICE)?;
        Ok(Self {
            plugin,
            client: Client::new(channel),
        })
    }

    /// Runs one Compose call: `None` when the plugin does not implement it.
    async fn compose<T>(
        &self,
        fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> PluginResult<Option<T>> {
        match self.plugin.call(fut).await {
            Ok(response) => Ok(Some(response)),
            Err(e) if e.code == Code::Unimplemented => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn missing() -> PluginError {
    PluginError::new(Code::Internal, "plugin returned empty response attributes")
}

fn dn_to_proto(d: DistinguishedName) -> ccv1::DistinguishedName {
    ccv1::DistinguishedName {
        country: d.country,
        organization: d.organization,
        organizational_unit: d.organizational_unit,
        locality: d.locality,
        province: d.province,
        street_address: d.street_address,
        postal_code: d.postal_code,
        serial_number: d.serial_number,
        common_name: d.common_name,
        extra_names: d
            .extra_names
            .into_iter()
            .map(|(oid, string_value)| ccv1::AttributeTypeAndValue { oid, string_value })
            .collect(),
    }
}

fn dn_from_proto(d: Option<ccv1::DistinguishedName>) -> PluginResult<DistinguishedName> {
    let d = d.ok_or_else(|| {
        PluginError::new(
            Code::Internal,
            "failed to parse attributes: subject: cannot be empty",
        )
    })?;
    Ok(DistinguishedName {
        country: d.country,
        organization: d.organization,
        organizational_unit: d.organizational_unit,
        locality: d.locality,
        province: d.province,
        street_address: d.street_address,
        postal_code: d.postal_code,
        serial_number: d.serial_number,
        common_name: d.common_name,
        extra_names: d
            .extra_names
            .into_iter()
            .map(|a| (a.oid, a.string_value))
            .collect(),
    })
}

fn extensions_to_proto(e: Vec<X509Extension>) -> Vec<ccv1::X509Extension> {
    e.into_iter()
        .map(|x| ccv1::X509Extension {
            oid: x.oid,
            value: x.value,
            critical: x.critical,
        })
        .collect()
}

fn extensions_from_proto(e: Vec<ccv1::X509Extension>) -> Vec<X509Extension> {
    e.into_iter()
        .map(|x| X509Extension {
            oid: x.oid,
            value: x.value,
            critical: x.critical,
        })
        .collect()
}

fn svid_to_proto(a: X509SvidAttributes) -> ccv1::X509svidAttributes {
    ccv1::X509svidAttributes {
        subject: Some(dn_to_proto(a.subject)),
        dns_sans: a.dns_sans,
        extra_extensions: extensions_to_proto(a.extra_extensions),
    }
}

fn svid_from_proto(a: Option<ccv1::X509svidAttributes>) -> PluginResult<X509SvidAttributes> {
    let a = a.ok_or_else(missing)?;
    Ok(X509SvidAttributes {
        subject: dn_from_proto(a.subject)?,
        dns_sans: a.dns_sans,
        extra_extensions: extensions_from_proto(a.extra_extensions),
    })
}

/// A JSON value as a protobuf `Value`.
fn to_value(v: serde_json::Value) -> pbjson_types::Value {
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(pbjson_types::ListValue {
            values: a.into_iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(to_struct(o)),
    };
    pbjson_types::Value { kind: Some(kind) }
}

fn to_struct(map: JwtClaims) -> pbjson_types::Struct {
    pbjson_types::Struct {
        fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

/// A protobuf `Value` as JSON; integral doubles within ±2^53 become integers.
fn from_value(v: pbjson_types::Value) -> serde_json::Value {
    match v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(b),
        Some(Kind::NumberValue(n)) => {
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if n.fract() == 0.0 && n.abs() <= EXACT {
                serde_json::Value::from(n as i64)
            } else {
                serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, Into::into)
            }
        }
        Some(Kind::StringValue(s)) => serde_json::Value::String(s),
        Some(Kind::ListValue(l)) => {
            serde_json::Value::Array(l.values.into_iter().map(from_value).collect())
        }
        Some(Kind::StructValue(s)) => serde_json::Value::Object(from_struct(s)),
    }
}

fn from_struct(s: pbjson_types::Struct) -> JwtClaims {
    s.fields
        .into_iter()
        .map(|(k, v)| (k, from_value(v)))
        .collect()
}

#[async_trait]
impl CredentialComposer for ExternalCredentialComposer {
    async fn compose_server_x509_ca(&self, a: X509CaAttributes) -> PluginResult<X509CaAttributes> {
        let mut client = self.client.clone();
        let request = ccv1::ComposeServerX509caRequest {
            attributes: Some(ccv1::X509caAttributes {
                subject: Some(dn_to_proto(a.subject.clone())),
                policy_identifiers: a.policy_identifiers.clone(),
                extra_extensions: extensions_to_proto(a.extra_extensions.clone()),
            }),
        };
        let Some(response) = self.compose(client.compose_server_x509ca(request)).await? else {
            return Ok(a);
        };
        let out = response.attributes.ok_or_else(missing)?;
        Ok(X509CaAttributes {
            subject: dn_from_proto(out.subject)?,
            policy_identifiers: out.policy_identifiers,
            extra_extensions: extensions_from_proto(out.extra_extensions),
        })
    }

    async fn compose_server_x509_svid(
        &self,
        a: X509SvidAttributes,
    ) -> PluginResult<X509SvidAttributes> {
        let mut client = self.client.clone();
        let request = ccv1::ComposeServerX509svidRequest {
            attributes: Some(svid_to_proto(a.clone())),
        };
        match self
            .compose(client.compose_server_x509svid(request))
            .await?
        {
            Some(response) => svid_from_proto(response.attributes),
            None => Ok(a),
        }
    }

    async fn compose_agent_x509_svid(
        &self,
        id: &SpiffeId,
        public_key: &PublicKey,
        a: X509SvidAttributes,
    ) -> PluginResult<X509SvidAttributes> {
        let mut client = self.client.clone();
        let request = ccv1::ComposeAgentX509svidRequest {
            attributes: Some(svid_to_proto(a.clone())),
            spiffe_id: id.to_string(),
            public_key: public_key.spki_der().to_vec(),
        };
        match self.compose(client.compose_agent_x509svid(request)).await? {
            Some(response) => svid_from_proto(response.attributes),
            None => Ok(a),
        }
    }

    async fn compose_workload_x509_svid(
        &self,
        id: &SpiffeId,
        public_key: &PublicKey,
        a: X509SvidAttributes,
    ) -> PluginResult<X509SvidAttributes> {
        let mut client = self.client.clone();
        let request = ccv1::ComposeWorkloadX509svidRequest {
            attributes: Some(svid_to_proto(a.clone())),
            spiffe_id: id.to_string(),
            public_key: public_key.spki_der().to_vec(),
        };
        match self
            .compose(client.compose_workload_x509svid(request))
            .await?
        {
            Some(response) => svid_from_proto(response.attributes),
            None => Ok(a),
        }
    }

    async fn compose_workload_jwt_svid(
        &self,
        id: &SpiffeId,
        claims: JwtClaims,
    ) -> PluginResult<JwtClaims> {
        let mut client = self.client.clone();
        let request = ccv1::ComposeWorkloadJwtsvidRequest {
            attributes: Some(ccv1::JwtsvidAttributes {
                claims: Some(to_struct(claims.clone())),
            }),
            spiffe_id: id.to_string(),
        };
        let Some(response) = self
            .compose(client.compose_workload_jwtsvid(request))
            .await?
        else {
            return Ok(claims);
        };
        let out = response.attributes.ok_or_else(missing)?;
        Ok(out.claims.map(from_struct).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_survive_the_struct_round_trip_with_integers_kept_integral() {
        let claims: JwtClaims = serde_json::from_str(
            r#"{"aud":["a","b"],"exp":1700000000,"nested":{"x":true,"y":null},"ratio":0.5,"sub":"spiffe://td/w"}"#,
        )
        .unwrap();
        let back = from_struct(to_struct(claims.clone()));
        assert_eq!(back, claims);
        assert_eq!(
            serde_json::Value::Object(back).to_string(),
            r#"{"aud":["a","b"],"exp":1700000000,"nested":{"x":true,"y":null},"ratio":0.5,"sub":"spiffe://td/w"}"#
        );
    }
}

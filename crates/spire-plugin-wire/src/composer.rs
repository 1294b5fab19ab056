//! CredentialComposer attributes and JWT claims.

use pbjson_types::value::Kind;
use spire_plugin::{
    Code, DistinguishedName, JwtClaims, PluginError, PluginResult, X509CaAttributes, X509Extension,
    X509SvidAttributes,
};
use spire_proto::spire::plugin::server::credentialcomposer::v1 as ccv1;

/// The error of an answer without attributes.
pub fn missing() -> PluginError {
    PluginError::new(Code::Internal, "plugin returned empty response attributes")
}

/// A distinguished name on the wire.
pub fn dn_to_proto(d: DistinguishedName) -> ccv1::DistinguishedName {
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

/// A distinguished name from the wire; SPIRE refuses attributes without a subject.
pub fn dn_from_proto(d: Option<ccv1::DistinguishedName>) -> PluginResult<DistinguishedName> {
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

/// Extra extensions on the wire.
pub fn extensions_to_proto(e: Vec<X509Extension>) -> Vec<ccv1::X509Extension> {
    e.into_iter()
        .map(|x| ccv1::X509Extension {
            oid: x.oid,
            value: x.value,
            critical: x.critical,
        })
        .collect()
}

/// Extra extensions from the wire.
pub fn extensions_from_proto(e: Vec<ccv1::X509Extension>) -> Vec<X509Extension> {
    e.into_iter()
        .map(|x| X509Extension {
            oid: x.oid,
            value: x.value,
            critical: x.critical,
        })
        .collect()
}

/// X509-SVID attributes on the wire.
pub fn svid_to_proto(a: X509SvidAttributes) -> ccv1::X509svidAttributes {
    ccv1::X509svidAttributes {
        subject: Some(dn_to_proto(a.subject)),
        dns_sans: a.dns_sans,
        extra_extensions: extensions_to_proto(a.extra_extensions),
    }
}

/// X509-SVID attributes from the wire.
pub fn svid_from_proto(a: Option<ccv1::X509svidAttributes>) -> PluginResult<X509SvidAttributes> {
    let a = a.ok_or_else(missing)?;
    Ok(X509SvidAttributes {
        subject: dn_from_proto(a.subject)?,
        dns_sans: a.dns_sans,
        extra_extensions: extensions_from_proto(a.extra_extensions),
    })
}

/// X.509 CA attributes on the wire.
pub fn ca_to_proto(a: X509CaAttributes) -> ccv1::X509caAttributes {
    ccv1::X509caAttributes {
        subject: Some(dn_to_proto(a.subject)),
        policy_identifiers: a.policy_identifiers,
        extra_extensions: extensions_to_proto(a.extra_extensions),
    }
}

/// X.509 CA attributes from the wire.
pub fn ca_from_proto(a: Option<ccv1::X509caAttributes>) -> PluginResult<X509CaAttributes> {
    let a = a.ok_or_else(missing)?;
    Ok(X509CaAttributes {
        subject: dn_from_proto(a.subject)?,
        policy_identifiers: a.policy_identifiers,
        extra_extensions: extensions_from_proto(a.extra_extensions),
    })
}

/// A JSON value as a protobuf `Value`.
pub fn to_value(v: serde_json::Value) -> pbjson_types::Value {
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

/// JWT claims as a `google.protobuf.Struct`.
pub fn to_struct(map: JwtClaims) -> pbjson_types::Struct {
    pbjson_types::Struct {
        fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

/// A protobuf `Value` as JSON; integral doubles within ±2^53 become integers.
pub fn from_value(v: pbjson_types::Value) -> serde_json::Value {
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

/// JWT claims from a `google.protobuf.Struct`.
pub fn from_struct(s: pbjson_types::Struct) -> JwtClaims {
    s.fields
        .into_iter()
        .map(|(k, v)| (k, from_value(v)))
        .collect()
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

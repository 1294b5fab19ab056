//! Bundles on the command line: SPIRE's `util.ParseBundle` (PEM or SPIFFE
//! JSON, with go-spiffe's and go-jose's error texts) and the bundle
//! printers of `bundle show|list`.

use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use spiffe_core::keys::{Curve, PublicKey};
use spiffe_core::{Bundle, TrustDomain};
use spire_proto::spire::api::types::{Bundle as ProtoBundle, JwtKey, X509Certificate};

use crate::goid::parse_td;
use crate::gojson::{Decoder, JVal, Node, parse};
use crate::pemutil;

pub(crate) const FORMAT_PEM: &str = "pem";
pub(crate) const FORMAT_SPIFFE: &str = "spiffe";

/// `validateFormat`: the lower-cased format, `pem` when empty.
pub(crate) fn validate_format(format: &str) -> Result<String, String> {
    let format = if format.is_empty() {
        FORMAT_PEM.to_owned()
    } else {
        format.to_lowercase()
    };
    match format.as_str() {
        FORMAT_PEM | FORMAT_SPIFFE => Ok(format),
        _ => Err(format!("invalid format: {}", crate::gofmt::quote(&format))),
    }
}

/// `util.ParseBundle`.
pub(crate) fn parse_bundle(data: &[u8], format: &str, id: &str) -> Result<ProtoBundle, String> {
    if format == FORMAT_PEM {
        let certs = pemutil::parse_certificates(data)
            .map_err(|e| format!("unable to parse bundle data: {e}"))?;
        return Ok(ProtoBundle {
            trust_domain: id.to_owned(),
            x509_authorities: certs
                .into_iter()
                .map(|asn1| X509Certificate {
                    asn1,
                    tainted: false,
                })
                .collect(),
            ..Default::default()
        });
    }
    let td = parse_td(id).map_err(str::to_owned)?;
    let parsed =
        parse_spiffe_bundle(data).map_err(|e| format!("unable to parse to spiffe bundle: {e}"))?;
    let mut bundle = ProtoBundle {
        trust_domain: td,
        x509_authorities: parsed
            .x509
            .into_iter()
            .map(|asn1| X509Certificate {
                asn1,
                tainted: false,
            })
            .collect(),
        ..Default::default()
    };
    for (kid, key) in parsed.jwt {
        match key {
            JwkKey::Public(k) => bundle.jwt_authorities.push(JwtKey {
                public_key: k.spki_der().to_vec(),
                key_id: kid,
                expires_at: 0,
                tainted: false,
            }),
            JwkKey::Symmetric => {
                return Err(
                    "unable to parse to type bundle: x509: unsupported public key type: []uint8"
                        .to_owned(),
                );
            }
        }
    }
    if let Some(r) = parsed.refresh_hint {
        bundle.refresh_hint = r;
    }
    if let Some(s) = parsed.sequence {
        bundle.sequence_number = s;
    }
    Ok(bundle)
}

enum JwkKey {
    Public(PublicKey),
    Symmetric,
}

struct JwkParsed {
    key_use: String,
    kid: String,
    key: JwkKey,
    certs: Vec<Vec<u8>>,
}

struct SpiffeBundle {
    x509: Vec<Vec<u8>>,
    /// JWT authorities by key ID, in first-seen order (later duplicates
    /// replace earlier ones, as go-spiffe's map does).
    jwt: Vec<(String, JwkKey)>,
    refresh_hint: Option<i64>,
    sequence: Option<u64>,
}

/// go-jose's `byteBuffer` decoding (base64url, padding tolerated).
fn byte_buffer(n: &Node) -> Result<Option<Vec<u8>>, String> {
    match &n.value {
        JVal::Null => Ok(None),
        JVal::Str(s) => {
            if s.is_empty() {
                return Ok(None);
            }
            let trimmed = s.trim_end_matches('=');
            URL_SAFE_NO_PAD
                .decode(trimmed)
                .map(Some)
                .map_err(|e| match e {
                    base64::DecodeError::InvalidByte(i, _) => {
                        format!("illegal base64 data at input byte {i}")
                    }
                    base64::DecodeError::InvalidLastSymbol(i, _) => {
                        format!("illegal base64 data at input byte {i}")
                    }
                    _ => format!("illegal base64 data at input byte {}", trimmed.len()),
                })
        }
        other => Err(format!(
            "json: cannot unmarshal {} into Go value of type string",
            other.kind()
        )),
    }
}

const RAW_JWK_FIELDS: &[&str] = &[
    "use", "kty", "kid", "crv", "alg", "k", "x", "y", "n", "e", "d", "p", "q", "dp", "dq", "qi",
    "x5c", "x5u", "x5t", "x5t#S256",
];

/// go-jose's `JSONWebKey.UnmarshalJSON`.
fn parse_jwk(node: &Node) -> Result<JwkParsed, String> {
    let mut d = Decoder::new();
    let mut strings: [String; 5] = Default::default();
    let mut buffers: Vec<(usize, Node)> = Vec::new();
    let mut x5c: Vec<String> = Vec::new();
    let mut x5_other: [String; 3] = Default::default();
    d.object(
        node,
        "rawJSONWebKey",
        "jose.rawJSONWebKey",
        RAW_JWK_FIELDS,
        |d, i, v| match i {
            0..=4 => d.string(v, &mut strings[i]),
            5..=15 => buffers.push((i, v.clone())),
            16 => x5c = d.strings(v).unwrap_or_default(),
            _ => d.string(v, &mut x5_other[i - 17]),
        },
    );
    // byteBuffer fields decode (and fail) in document order.
    let mut decoded: [Option<Vec<u8>>; 16] = Default::default();
    for (i, v) in &buffers {
        decoded[*i] = byte_buffer(v)?;
    }
    d.finish()?;
    let [key_use, kty, kid, crv, _alg] = strings;
    let mut certs = Vec::new();
    for c in &x5c {
        let der = STANDARD.decode(c).map_err(|_| {
            "go-jose/go-jose: failed to unmarshal x5c field: illegal base64 data".to_owned()
        })?;
        pemutil::check_certificate(&der)
            .map_err(|e| format!("go-jose/go-jose: failed to unmarshal x5c field: {e}"))?;
        certs.push(der);
    }
    let has = |i: usize| decoded[i].is_some();
    let key = match kty.as_str() {
        "EC" => {
            let curve = match crv.as_str() {
                "P-256" => Curve::P256,
                "P-384" => Curve::P384,
                "P-521" => Curve::P521,
                other => {
                    return Err(format!(
                        "go-jose/go-jose: unsupported elliptic curve '{other}'"
                    ));
                }
            };
            let (Some(x), Some(y)) = (&decoded[6], &decoded[7]) else {
                return Err("go-jose/go-jose: invalid EC key, missing x/y values".into());
            };
            let size = curve.coordinate_len();
            if x.len() != size {
                return Err("go-jose/go-jose: invalid EC public key, wrong length for x".into());
            }
            if y.len() != size {
                return Err("go-jose/go-jose: invalid EC public key, wrong length for y".into());
            }
            JwkKey::Public(PublicKey::from_ec_coordinates(curve, x, y).map_err(|_| {
                "go-jose/go-jose: invalid EC key, X/Y are not on declared curve".to_owned()
            })?)
        }
        "RSA" => {
            let (Some(n), Some(e)) = (&decoded[8], &decoded[9]) else {
                return Err("go-jose/go-jose: invalid RSA key, missing n/e values".into());
            };
            JwkKey::Public(
                PublicKey::from_rsa_components(n, e)
                    .map_err(|e| format!("go-jose/go-jose: invalid RSA key: {e}"))?,
            )
        }
        "oct" => {
            if !certs.is_empty() {
                return Err(
                    "go-jose/go-jose: invalid JWK, found 'oct' (symmetric) key with cert chain"
                        .into(),
                );
            }
            if !has(5) {
                return Err("go-jose/go-jose: invalid OCT (symmetric) key, missing k value".into());
            }
            JwkKey::Symmetric
        }
        "" => return Err("go-jose/go-jose: missing json web key type".into()),
        _ => return Err("go-jose/go-jose: unsupported key type/format".into()),
    };
    if let (Some(cert), JwkKey::Public(k)) = (certs.first(), &key) {
        let cert_key = x509_parser::parse_x509_certificate(cert)
            .ok()
            .and_then(|(_, c)| PublicKey::from_parsed_spki(c.public_key()).ok());
        if cert_key.as_ref().is_some_and(|ck| ck != k) {
            return Err(
                "go-jose/go-jose: invalid JWK, public keys in key and x5c fields do not match"
                    .into(),
            );
        }
    }
    Ok(JwkParsed {
        key_use,
        kid,
        key,
        certs,
    })
}

/// go-spiffe's `spiffebundle.Parse`.
fn parse_spiffe_bundle(data: &[u8]) -> Result<SpiffeBundle, String> {
    let wrap = |e: String| format!("spiffebundle: unable to parse JWKS: {e}");
    let doc = parse(data).map_err(wrap)?;
    let mut d = Decoder::new();
    let mut keys: Option<Vec<Node>> = None;
    let mut sequence: Option<u64> = None;
    let mut refresh: Option<i64> = None;
    d.object(
        &doc,
        "bundleDoc",
        "spiffebundle.bundleDoc",
        &[
            "JSONWebKeySet.keys",
            "spiffe_sequence",
            "spiffe_refresh_hint",
        ],
        |d, i, v| match i {
            0 => keys = d.slice(v, "[]jose.JSONWebKey", |_, n| n.clone()),
            1 => {
                if !matches!(v.value, JVal::Null) {
                    let mut s = 0;
                    d.uint(v, &mut s, "uint64");
                    sequence = Some(s);
                } else {
                    sequence = None;
                }
            }
            _ => {
                if !matches!(v.value, JVal::Null) {
                    let mut r = 0;
                    d.int(v, &mut r, 64, "int64");
                    refresh = Some(r);
                } else {
                    refresh = None;
                }
            }
        },
    );
    let mut parsed = Vec::new();
    for k in keys.iter().flatten() {
        parsed.push(parse_jwk(k).map_err(wrap)?);
    }
    d.finish().map_err(wrap)?;
    if keys.is_none() {
        return Err("spiffebundle: no authorities found".into());
    }
    let mut bundle = SpiffeBundle {
        x509: Vec::new(),
        jwt: Vec::new(),
        refresh_hint: refresh,
        sequence,
    };
    for (i, k) in parsed.into_iter().enumerate() {
        match k.key_use.as_str() {
            "x509-svid" => {
                if k.certs.len() != 1 {
                    return Err(format!(
                        "spiffebundle: expected a single certificate in x509-svid entry {i}; got {}",
                        k.certs.len()
                    ));
                }
                let cert = k.certs.into_iter().next().unwrap_or_default();
                if !bundle.x509.contains(&cert) {
                    bundle.x509.push(cert);
                }
            }
            "jwt-svid" => {
                if k.kid.is_empty() {
                    return Err(format!(
                        "spiffebundle: error adding authority {i} of JWKS: keyID cannot be empty"
                    ));
                }
                match bundle.jwt.iter_mut().find(|(kid, _)| *kid == k.kid) {
                    Some(slot) => slot.1 = k.key,
                    None => bundle.jwt.push((k.kid, k.key)),
                }
            }
            _ => {}
        }
    }
    Ok(bundle)
}

/// `bundleFromProto` then `Marshal` and `json.Indent`: the SPIFFE bundle
/// document SPIRE prints.
fn spiffe_json(b: &ProtoBundle) -> Result<String, String> {
    let td = parse_td(&b.trust_domain).map_err(str::to_owned)?;
    let td = TrustDomain::new(&td).map_err(|e| e.to_string())?;
    let mut bundle = Bundle::new(td);
    for (i, a) in b.x509_authorities.iter().enumerate() {
        pemutil::check_certificate(&a.asn1)
            .map_err(|e| format!("unable to parse root CA {i}: {e}"))?;
        bundle
            .x509_authorities
            .push(spiffe_core::bundle::X509Authority {
                der: a.asn1.clone(),
                tainted: false,
            });
    }
    for (i, k) in b.jwt_authorities.iter().enumerate() {
        let key = PublicKey::from_spki_der(&k.public_key).map_err(|_| {
            format!("unable to parse JWT signing key {i}: x509: failed to parse public key")
        })?;
        let authority = spiffe_core::bundle::JwtAuthority {
            key_id: k.key_id.clone(),
            public_key: key,
            expires_at: 0,
            tainted: false,
        };
        match bundle
            .jwt_authorities
            .iter_mut()
            .find(|a| a.key_id == k.key_id)
        {
            Some(slot) => *slot = authority,
            None => bundle.jwt_authorities.push(authority),
        }
    }
    if b.refresh_hint > 0 {
        bundle.refresh_hint = Some(b.refresh_hint);
    }
    if b.sequence_number > 0 {
        bundle.sequence_number = Some(b.sequence_number);
    }
    Ok(bundle.to_spiffe_json())
}

/// `printBundleWithFormat`.
pub(crate) fn print_bundle_with_format(
    out: &mut dyn Write,
    bundle: &ProtoBundle,
    format: &str,
    header: bool,
) -> Result<(), String> {
    let format = validate_format(format)?;
    if header {
        let _ = write!(
            out,
            "****************************************\n* {}\n****************************************\n",
            bundle.trust_domain
        );
    }
    if format == FORMAT_PEM {
        for cert in &bundle.x509_authorities {
            let certs = pemutil::split_certificates(&cert.asn1)
                .map_err(|e| format!("unable to parse certificates ASN.1 DER data: {e}"))?;
            for c in certs {
                let _ = out.write_all(pemutil::encode("CERTIFICATE", &c).as_bytes());
            }
        }
        return Ok(());
    }
    let doc = spiffe_json(bundle)?;
    let _ = writeln!(out, "{doc}");
    Ok(())
}

//! `spire-server x509 mint` and `spire-server jwt mint`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use spire_goflag::{Command, Flag, GoDuration, Io, Parsed, StringsFlag};
use spire_proto::spire::api::server::bundle::v1::GetBundleRequest;
use spire_proto::spire::api::server::svid::v1::{MintJwtsvidRequest, MintX509svidRequest};

use super::{Adapter, ServerClient, ServerCommand, err, out};
use crate::gofmt::{clean_path, join_path, now_nanos, quote, rfc3339_utc, write_file};
use crate::goid::parse_id;
use crate::gojson::push_go_string;
use crate::grpc::RpcError;
use crate::pemutil;
use crate::printer::{OutputFlag, is_json, output_flag, print_proto, print_struct_json};

/// `ttlToSeconds`: seconds rounded up, checked to fit an `int32`.
fn ttl_to_seconds(ttl: GoDuration) -> Result<i32, String> {
    let ns = ttl.as_nanos();
    let secs = ns.saturating_add(999_999_999) / 1_000_000_000;
    i32::try_from(secs).map_err(|_| {
        format!(
            "invalid value for TTL: overflow converting time.Duration({}) to int32",
            GoDuration::from_nanos(secs)
        )
    })
}

/// Whether a lifetime ending at `eol` (Unix seconds) is shorter than `ttl`.
fn capped(eol: i64, ttl: GoDuration) -> bool {
    i128::from(eol) * 1_000_000_000 - now_nanos() < i128::from(ttl.as_nanos())
}

/// `x509 mint`.
struct X509Mint {
    spiffe_id: Flag<String>,
    ttl: Flag<GoDuration>,
    dns: Flag<StringsFlag>,
    write: Flag<String>,
    output: Flag<OutputFlag>,
}

pub(crate) fn x509_command() -> Box<dyn Command> {
    Adapter::new("x509 mint", |f| X509Mint {
        spiffe_id: f.string("spiffeID", "", "SPIFFE ID of the X509-SVID"),
        ttl: f.duration("ttl", GoDuration::ZERO, "TTL of the X509-SVID"),
        dns: f.strings(
            "dns",
            "DNS name that will be included in SVID. Can be used more than once.",
        ),
        write: f.string(
            "write",
            "",
            "Directory to write output to instead of stdout",
        ),
        output: output_flag(f),
    })
    .boxed()
}

/// A P-256 key (PKCS#8 DER) and a CSR for `uri` and `dns`.
fn key_and_csr(uri: &str, dns: &[String]) -> Result<(Vec<u8>, Vec<u8>), String> {
    use rcgen::{CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("unable to generate key: {e}"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for name in dns {
        let ia5 = name.as_str().try_into().map_err(|_| {
            format!(
                "unable to generate CSR: x509: {} cannot be encoded as an IA5String",
                quote(name)
            )
        })?;
        params.subject_alt_names.push(SanType::DnsName(ia5));
    }
    let uri = uri
        .try_into()
        .map_err(|e| format!("unable to generate CSR: {e}"))?;
    params.subject_alt_names.push(SanType::URI(uri));
    let csr = params
        .serialize_request(&key)
        .map_err(|e| format!("unable to generate CSR: {e}"))?;
    Ok((key.serialize_der(), csr.der().to_vec()))
}

impl ServerCommand for X509Mint {
    fn synopsis(&self) -> &'static str {
        "Mints an X509-SVID"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let raw = m.get(&self.spiffe_id);
        if raw.is_empty() {
            return Err("spiffeID must be specified".into());
        }
        let id = parse_id(raw)?;
        let ttl_flag = *m.get(&self.ttl);
        let ttl = ttl_to_seconds(ttl_flag)?;
        let (key, csr) = key_and_csr(&id.string(), m.get(&self.dns).as_slice())?;
        let resp = async {
            let r = c
                .svid()
                .await?
                .mint_x509svid(MintX509svidRequest { csr, ttl })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| format!("unable to mint SVID: {e}"))?;
        let svid = resp.svid.unwrap_or_default();
        if svid.cert_chain.is_empty() {
            return Err("server response missing SVID chain".into());
        }
        let ca = async {
            let r = c
                .bundle()
                .await?
                .get_bundle(GetBundleRequest { output_mask: None })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| format!("unable to get bundle: {e}"))?;
        if ca.x509_authorities.is_empty() {
            return Err("server response missing X509 Authorities".into());
        }
        if capped(svid.expires_at, ttl_flag) {
            err!(
                io,
                "X509-SVID lifetime was capped shorter than specified ttl; expires {}\n",
                quote(&rfc3339_utc(svid.expires_at))
            );
        }
        let roots: Vec<Vec<u8>> = ca.x509_authorities.into_iter().map(|a| a.asn1).collect();
        let pem_all = |kind: &str, ders: &[Vec<u8>]| -> String {
            ders.iter().map(|d| pemutil::encode(kind, d)).collect()
        };
        let svid_pem = pem_all("CERTIFICATE", &svid.cert_chain);
        let key_pem = pemutil::encode("PRIVATE KEY", &key);
        let bundle_pem = pem_all("CERTIFICATE", &roots);
        let dir = m.get(&self.write);
        if dir.is_empty() {
            if is_json(m, &self.output) {
                let list = |ders: &[Vec<u8>]| {
                    let mut s = String::from("[");
                    for (i, d) in ders.iter().enumerate() {
                        if i > 0 {
                            s.push(',');
                        }
                        push_go_string(&mut s, &STANDARD.encode(d));
                    }
                    s.push(']');
                    s
                };
                let mut text = format!(
                    "[{{\"x509_svid\":{},\"private_key\":",
                    list(&svid.cert_chain)
                );
                push_go_string(&mut text, &STANDARD.encode(&key));
                text.push_str(&format!(",\"root_cas\":{}}}]", list(&roots)));
                return print_struct_json(io, &text);
            }
            out!(io, "X509-SVID:\n{svid_pem}\n");
            out!(io, "Private key:\n{key_pem}\n");
            out!(io, "Root CAs:\n{bundle_pem}\n");
            return Ok(());
        }
        let svid_path = join_path(&[dir, "svid.pem"]);
        let key_path = join_path(&[dir, "key.pem"]);
        let bundle_path = join_path(&[dir, "bundle.pem"]);
        write_file(&svid_path, svid_pem.as_bytes(), 0o644)
            .map_err(|e| format!("unable to write SVID: {e}"))?;
        out!(io, "X509-SVID written to {svid_path}\n");
        write_file(&key_path, key_pem.as_bytes(), 0o600)
            .map_err(|e| format!("unable to write key: {e}"))?;
        out!(io, "Private key written to {key_path}\n");
        write_file(&bundle_path, bundle_pem.as_bytes(), 0o644)
            .map_err(|e| format!("unable to write bundle: {e}"))?;
        out!(io, "Root CAs written to {bundle_path}\n");
        Ok(())
    }
}

/// `jwt mint`.
struct JwtMint {
    spiffe_id: Flag<String>,
    ttl: Flag<GoDuration>,
    audience: Flag<StringsFlag>,
    write: Flag<String>,
    output: Flag<OutputFlag>,
}

pub(crate) fn jwt_command() -> Box<dyn Command> {
    Adapter::new("jwt mint", |f| JwtMint {
        spiffe_id: f.string("spiffeID", "", "SPIFFE ID of the JWT-SVID"),
        ttl: f.duration("ttl", GoDuration::ZERO, "TTL of the JWT-SVID"),
        audience: f.strings(
            "audience",
            "Audience claim that will be included in the SVID. Can be used more than once.",
        ),
        write: f.string("write", "", "File to write token to instead of stdout"),
        output: output_flag(f),
    })
    .boxed()
}

/// The `exp` claim of a compact JWS, read without verification.
fn jwt_expiry(token: &str) -> Result<i64, String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err("go-jose/go-jose: compact JWS format must have three parts".into());
    }
    let payload = URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .map_err(|e| format!("illegal base64 data: {e}"))?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
    match claims.get("exp").and_then(serde_json::Value::as_f64) {
        Some(exp) => Ok(exp as i64),
        None => Err("no expiry claim".into()),
    }
}

impl ServerCommand for JwtMint {
    fn synopsis(&self) -> &'static str {
        "Mints a JWT-SVID"
    }

    async fn run(&self, m: &Parsed, io: &mut Io<'_>, c: &mut ServerClient) -> Result<(), String> {
        let raw = m.get(&self.spiffe_id);
        if raw.is_empty() {
            return Err("spiffeID must be specified".into());
        }
        let audience = m.get(&self.audience);
        if audience.is_empty() {
            return Err("at least one audience must be specified".into());
        }
        let id = parse_id(raw)?;
        let ttl_flag = *m.get(&self.ttl);
        let ttl = ttl_to_seconds(ttl_flag)?;
        let resp = async {
            let r = c
                .svid()
                .await?
                .mint_jwtsvid(MintJwtsvidRequest {
                    id: Some(id.proto()),
                    audience: audience.to_vec(),
                    ttl,
                })
                .await?;
            Ok::<_, RpcError>(r.into_inner())
        }
        .await
        .map_err(|e| format!("unable to mint SVID: {e}"))?;
        let token = resp
            .svid
            .as_ref()
            .map(|s| s.token.clone())
            .unwrap_or_default();
        if token.is_empty() {
            return Err("server response missing token".into());
        }
        match jwt_expiry(&token) {
            Err(e) => err!(io, "Unable to determine JWT-SVID lifetime: {e}\n"),
            Ok(eol) => {
                if capped(eol, ttl_flag) {
                    err!(
                        io,
                        "JWT-SVID lifetime was capped shorter than specified ttl; expires {}\n",
                        quote(&rfc3339_utc(eol))
                    );
                }
            }
        }
        let path = m.get(&self.write);
        if path.is_empty() {
            if is_json(m, &self.output) {
                return print_proto(io, &resp);
            }
            out!(io, "{token}\n");
            return Ok(());
        }
        let path = clean_path(path);
        write_file(&path, token.as_bytes(), 0o600)
            .map_err(|e| format!("unable to write token: {e}"))?;
        out!(io, "JWT-SVID written to {path}\n");
        Ok(())
    }
}

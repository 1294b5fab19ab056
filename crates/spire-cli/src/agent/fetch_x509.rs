//! `spire-agent api fetch [x509]` and the X509-SVID printer `api watch`
//! shares.

use std::time::Instant;

use spire_gocompat::format_go_duration;
use spire_goflag::{Command, Flag, GoDuration, Io, Parsed};
use spire_proto::workload::{X509svidRequest, X509svidResponse};

use super::{ApiAdapter, ApiCommand, WorkloadClient, with_deadline};
use crate::gofmt::{join_path, quote, utc_string, write_file};
use crate::goid::parse_id;
use crate::grpc::RpcError;
use crate::pemutil;
use crate::printer::{OutputFlag, is_json, output_flag, print_proto};
use crate::server::out;

/// One parsed X509-SVID of a Workload API response (SPIRE's `X509SVID`).
#[derive(Debug, Clone)]
pub(crate) struct Svid {
    pub(crate) spiffe_id: String,
    pub(crate) hint: String,
    pub(crate) certificates: Vec<Vec<u8>>,
    pub(crate) key: Vec<u8>,
    pub(crate) bundle: Vec<Vec<u8>>,
    /// Federated bundles by trust domain ID, sorted.
    pub(crate) federated: Vec<(String, Vec<Vec<u8>>)>,
}

/// `NotBefore` and `NotAfter` of a certificate, as Go prints them.
fn validity(der: &[u8]) -> (String, String) {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, c)) => (
            utc_string(c.validity().not_before.timestamp()),
            utc_string(c.validity().not_after.timestamp()),
        ),
        Err(_) => (utc_string(0), utc_string(0)),
    }
}

/// `printX509SVIDResponse`.
pub(crate) fn print_response(io: &mut Io<'_>, svids: &[Svid], elapsed: GoDuration) {
    let mut msg = format!("Received {} svid", svids.len());
    if svids.len() != 1 {
        msg.push('s');
    }
    msg.push_str(&format!(" after {}", format_go_duration(elapsed)));
    out!(io, "{msg}\n");
    for svid in svids {
        out!(io, "\n");
        out!(io, "SPIFFE ID:\t\t{}\n", svid.spiffe_id);
        if !svid.hint.is_empty() {
            out!(io, "Hint:\t\t\t{}\n", svid.hint);
        }
        if let Some(leaf) = svid.certificates.first() {
            let (nb, na) = validity(leaf);
            out!(io, "SVID Valid After:\t{nb}\n");
            out!(io, "SVID Valid Until:\t{na}\n");
        }
        for (i, c) in svid.certificates.iter().skip(1).enumerate() {
            let (nb, na) = validity(c);
            out!(io, "Intermediate #{} Valid After:\t{nb}\n", i + 1);
            out!(io, "Intermediate #{} Valid Until:\t{na}\n", i + 1);
        }
        for (i, c) in svid.bundle.iter().enumerate() {
            let (nb, na) = validity(c);
            out!(io, "CA #{} Valid After:\t{nb}\n", i + 1);
            out!(io, "CA #{} Valid Until:\t{na}\n", i + 1);
        }
        for (td, certs) in &svid.federated {
            for (i, c) in certs.iter().enumerate() {
                let (nb, na) = validity(c);
                out!(io, "[{td}] CA #{} Valid After:\t{nb}\n", i + 1);
                out!(io, "[{td}] CA #{} Valid Until:\t{na}\n", i + 1);
            }
        }
    }
    out!(io, "\n");
}

/// `parseAndValidateX509SVIDResponse`.
pub(crate) fn parse_response(resp: &X509svidResponse) -> Result<Vec<Svid>, String> {
    if resp.svids.is_empty() {
        return Err("workload response contains no svids".into());
    }
    let mut federated = Vec::new();
    for (td, der) in &resp.federated_bundles {
        let certs = pemutil::split_certificates(der).map_err(|e| {
            format!(
                "failed to parse bundle for federated domain {}: {e}",
                quote(td)
            )
        })?;
        if certs.is_empty() {
            return Err(format!(
                "no certificates in bundle for federated domain {}",
                quote(td)
            ));
        }
        federated.push((td.clone(), certs));
    }
    federated.sort_by(|a, b| a.0.cmp(&b.0));
    let mut svids = Vec::new();
    for (i, s) in resp.svids.iter().enumerate() {
        let wrap = |e: String| {
            format!(
                "failed to parse svid entry {i} for spiffe id {}: {e}",
                quote(&s.spiffe_id)
            )
        };
        let certificates = pemutil::split_certificates(&s.x509_svid).map_err(wrap)?;
        if certificates.is_empty() {
            return Err(wrap("no certificates found".into()));
        }
        spiffe_core::PrivateKey::from_pkcs8_der(&s.x509_svid_key).map_err(|_| {
            wrap("failed to parse private key: x509: failed to parse private key".into())
        })?;
        let bundle = pemutil::split_certificates(&s.bundle)
            .map_err(|e| wrap(format!("failed to parse trust bundle: {e}")))?;
        if bundle.is_empty() {
            return Err(wrap("no certificates in trust bundle".into()));
        }
        svids.push(Svid {
            spiffe_id: s.spiffe_id.clone(),
            hint: s.hint.clone(),
            certificates,
            key: s.x509_svid_key.clone(),
            bundle,
            federated: federated.clone(),
        });
    }
    for svid in &svids {
        let id = parse_id(&svid.spiffe_id)?;
        let td = spiffe_core::TrustDomain::new(&id.td).map_err(|e| e.to_string())?;
        let mut bundle = spiffe_core::Bundle::new(td);
        for c in &svid.bundle {
            bundle.add_x509_authority(c.clone());
        }
        spiffe_core::x509svid::verify_chain(
            &svid.certificates,
            &bundle,
            std::time::SystemTime::now(),
        )
        .map_err(|e| {
            let text = e.to_string();
            let text = if text.starts_with("x509svid: ") {
                text
            } else {
                format!("x509svid: could not verify leaf certificate: {text}")
            };
            format!(
                "{} SVID failed verification against bundle: {text}",
                quote(&svid.spiffe_id)
            )
        })?;
    }
    Ok(svids)
}

/// `fetchX509Command`.
struct FetchX509 {
    silent: Flag<bool>,
    write: Flag<String>,
    output: Flag<OutputFlag>,
}

pub(crate) fn command() -> Box<dyn Command> {
    ApiAdapter::new("fetch x509", |f| FetchX509 {
        silent: f.bool("silent", false, "Suppress stdout"),
        write: f.string(
            "write",
            "",
            "Write SVID data to the specified path (optional; only available for pretty output format)",
        ),
        output: output_flag(f),
    })
    .boxed()
}

fn certs_pem(certs: &[Vec<u8>]) -> String {
    certs
        .iter()
        .map(|c| pemutil::encode("CERTIFICATE", c))
        .collect()
}

/// `writeResponse`.
fn write_response(io: &mut Io<'_>, dir: &str, svids: &[Svid]) -> Result<(), String> {
    for (i, svid) in svids.iter().enumerate() {
        let svid_path = join_path(&[dir, &format!("svid.{i}.pem")]);
        let key_path = join_path(&[dir, &format!("svid.{i}.key")]);
        let bundle_path = join_path(&[dir, &format!("bundle.{i}.pem")]);
        out!(io, "Writing SVID #{i} to file {svid_path}.\n");
        write_file(&svid_path, certs_pem(&svid.certificates).as_bytes(), 0o644)?;
        out!(io, "Writing key #{i} to file {key_path}.\n");
        write_file(
            &key_path,
            pemutil::encode("PRIVATE KEY", &svid.key).as_bytes(),
            0o600,
        )?;
        out!(io, "Writing bundle #{i} to file {bundle_path}.\n");
        write_file(&bundle_path, certs_pem(&svid.bundle).as_bytes(), 0o644)?;
        for (j, (td, certs)) in svid.federated.iter().enumerate() {
            let path = join_path(&[dir, &format!("federated_bundle.{i}.{j}.pem")]);
            out!(
                io,
                "Writing federated bundle #{j} for trust domain {td} to file {path}.\n"
            );
            write_file(&path, certs_pem(certs).as_bytes(), 0o644)?;
        }
    }
    Ok(())
}

/// The first response of `FetchX509SVID`.
pub(crate) async fn fetch_first(client: &mut WorkloadClient) -> Result<X509svidResponse, RpcError> {
    let timeout = client.timeout();
    with_deadline(timeout, async {
        let req = client.request(X509svidRequest {});
        let mut stream = client
            .client()
            .await?
            .fetch_x509svid(req)
            .await?
            .into_inner();
        match stream.message().await? {
            Some(m) => Ok(m),
            None => Err(RpcError {
                code: tonic::Code::Unknown,
                message: String::new(),
            }),
        }
    })
    .await
}

impl ApiCommand for FetchX509 {
    fn synopsis(&self) -> &'static str {
        "Fetches X509 SVIDs from the Workload API"
    }

    async fn run(
        &self,
        m: &Parsed,
        io: &mut Io<'_>,
        client: &mut WorkloadClient,
    ) -> Result<(), String> {
        let start = Instant::now();
        let resp = fetch_first(client).await;
        let elapsed =
            GoDuration::from_nanos(i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX));
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.code == tonic::Code::Unknown && e.message.is_empty() => {
                return Err("EOF".into());
            }
            Err(e) => return Err(e.to_string()),
        };
        if is_json(m, &self.output) {
            return print_proto(io, &resp);
        }
        let svids = parse_response(&resp)?;
        if !*m.get(&self.silent) {
            print_response(io, &svids, elapsed);
        }
        let dir = m.get(&self.write);
        if !dir.is_empty() {
            write_response(io, dir, &svids)?;
        }
        Ok(())
    }
}

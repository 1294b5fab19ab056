//! `spire-agent api watch`.

use std::time::{Duration, Instant};

use spire_goflag::{Command, Flag, FlagSet, GoDuration, Io};
use spire_proto::workload::{X509svidRequest, X509svidResponse};

use super::fetch_x509::{Svid, print_response};
use super::{DEFAULT_SOCKET_PATH, WorkloadClient};
use crate::gofmt::abs_path;
use crate::grpc::{RpcError, runtime};
use crate::pemutil;

/// `WatchCLI`.
#[derive(Debug)]
pub(crate) struct Watch;

fn flags() -> (FlagSet, Flag<String>) {
    let mut fs = FlagSet::new("watch");
    let socket = fs.string(
        "socketPath",
        DEFAULT_SOCKET_PATH,
        "Path to the SPIRE Agent API Unix domain socket",
    );
    (fs, socket)
}

/// go-spiffe's `parseX509Context`, reduced to what the watcher prints.
fn parse_context(resp: &X509svidResponse) -> Result<Vec<Svid>, String> {
    if resp.svids.is_empty() {
        return Err("no SVIDs in response".into());
    }
    // Bundles by trust domain name; later ones replace earlier ones.
    let mut bundles: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    let mut put = |td: String, certs: Vec<Vec<u8>>| match bundles.iter_mut().find(|(t, _)| *t == td)
    {
        Some(slot) => slot.1 = certs,
        None => bundles.push((td, certs)),
    };
    let mut parsed = Vec::new();
    let mut hints = Vec::new();
    for s in &resp.svids {
        if !s.hint.is_empty() {
            if hints.contains(&s.hint) {
                continue;
            }
            hints.push(s.hint.clone());
        }
        let certs = pemutil::split_certificates(&s.x509_svid)
            .map_err(|e| format!("x509svid: unable to parse certificates: {e}"))?;
        let id = spiffe_core::x509svid::id_from_der(certs.first().map_or(&[][..], Vec::as_slice))
            .map_err(|e| format!("x509svid: {e}"))?;
        let bundle = pemutil::split_certificates(&s.bundle)
            .map_err(|e| format!("x509bundle: unable to parse certificates: {e}"))?;
        put(id.trust_domain_name().to_owned(), bundle);
        parsed.push((
            id.as_str().to_owned(),
            id.trust_domain_name().to_owned(),
            certs,
            s.x509_svid_key.clone(),
        ));
    }
    for (td_id, der) in &resp.federated_bundles {
        let td = crate::goid::parse_td(td_id).map_err(|e| format!("x509bundle: {e}"))?;
        let certs = pemutil::split_certificates(der)
            .map_err(|e| format!("x509bundle: unable to parse certificates: {e}"))?;
        put(td, certs);
    }
    bundles.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(parsed
        .into_iter()
        .map(|(spiffe_id, td, certificates, key)| {
            let mut bundle = Vec::new();
            let mut federated = Vec::new();
            for (name, certs) in &bundles {
                if *name == td {
                    bundle = certs.clone();
                } else {
                    federated.push((name.clone(), certs.clone()));
                }
            }
            Svid {
                spiffe_id,
                hint: String::new(),
                certificates,
                key,
                bundle,
                federated,
            }
        })
        .collect())
}

/// What ended a watch.
enum Stop {
    /// Standard output can no longer be written.
    Output,
    /// An error go-spiffe does not retry.
    Fatal(RpcError),
}

/// One `FetchX509SVID` stream: prints every update until the stream fails
/// (the failure is returned) or output cannot be written.
async fn watch_once(
    client: &mut WorkloadClient,
    io: &mut Io<'_>,
    since: &mut Instant,
    received: &mut bool,
) -> Result<RpcError, Stop> {
    let req = client.request(X509svidRequest {});
    let mut api = match client.client().await {
        Ok(a) => a,
        Err(e) => return Ok(e),
    };
    let mut stream = match api.fetch_x509svid(req).await {
        Ok(s) => s.into_inner(),
        Err(e) => return Ok(e.into()),
    };
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                return Ok(RpcError {
                    code: tonic::Code::Unknown,
                    message: String::new(),
                });
            }
            Err(e) => return Ok(e.into()),
        };
        *received = true;
        match parse_context(&msg) {
            Err(e) => {
                if io.stderr.write_all(format!("{e}\n").as_bytes()).is_err() {
                    return Err(Stop::Output);
                }
            }
            Ok(svids) => {
                let elapsed = GoDuration::from_nanos(
                    i64::try_from(since.elapsed().as_nanos()).unwrap_or(i64::MAX),
                );
                let mut buf = Vec::new();
                {
                    let mut stdin: &[u8] = &[];
                    let mut sink = std::io::sink();
                    let mut tmp = Io {
                        stdin: &mut stdin,
                        stdout: &mut buf,
                        stderr: &mut sink,
                    };
                    print_response(&mut tmp, &svids, elapsed);
                }
                if io
                    .stdout
                    .write_all(&buf)
                    .and_then(|()| io.stdout.flush())
                    .is_err()
                {
                    return Err(Stop::Output);
                }
                *since = Instant::now();
            }
        }
    }
}

fn describe(e: &RpcError) -> String {
    if e.code == tonic::Code::Unknown && e.message.is_empty() {
        "EOF".to_owned()
    } else {
        e.to_string()
    }
}

async fn watch(path: String, io: &mut Io<'_>) -> Result<(), String> {
    let mut client = WorkloadClient::new(path.clone(), None);
    let mut since = Instant::now();
    let mut attempt: u64 = 0;
    loop {
        let mut received = false;
        let result = tokio::select! {
            r = watch_once(&mut client, io, &mut since, &mut received) => r,
            _ = tokio::signal::ctrl_c() => Err(Stop::Fatal(RpcError {
                code: tonic::Code::Cancelled,
                message: "context canceled".to_owned(),
            })),
        };
        let err = match result {
            Ok(e) => e,
            Err(Stop::Output) => return Err(String::new()),
            Err(Stop::Fatal(e)) => {
                let _ = writeln!(io.stderr, "{}", describe(&e));
                return Err(describe(&e));
            }
        };
        // go-spiffe reports every failure to the watcher, which prints it.
        if io
            .stderr
            .write_all(format!("{}\n", describe(&err)).as_bytes())
            .is_err()
        {
            return Err(String::new());
        }
        if matches!(
            err.code,
            tonic::Code::Cancelled | tonic::Code::InvalidArgument
        ) {
            return Err(describe(&err));
        }
        // go-spiffe's linear backoff (one second more per failure, at most
        // 30s), reset by every update received.
        if received {
            attempt = 0;
        }
        attempt += 1;
        let delay = Duration::from_secs(attempt.min(30));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = tokio::signal::ctrl_c() => {
                return Err("context canceled".to_owned());
            }
        }
        // A fresh connection for the next attempt.
        client = WorkloadClient::new(path.clone(), None);
    }
}

impl Command for Watch {
    fn synopsis(&self) -> String {
        "Attaches to the Workload API and prints updates as they're received".to_owned()
    }

    fn help(&self, io: &mut Io<'_>) -> String {
        flags().0.help_text(io.stderr)
    }

    fn run(&self, args: &[String], io: &mut Io<'_>) -> i32 {
        let (fs, socket) = flags();
        let m = match fs.parse(args, io.stderr) {
            Ok(m) => m,
            Err(e) => {
                let _ = writeln!(io.stderr, "{e}");
                return 1;
            }
        };
        let path = match abs_path(m.get(&socket).as_str()) {
            Ok(p) => p,
            Err(e) => {
                let _ = writeln!(
                    io.stderr,
                    "failed to get absolute path for socket path: {e}"
                );
                return 1;
            }
        };
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = writeln!(io.stderr, "{e}");
                return 1;
            }
        };
        match rt.block_on(watch(path, io)) {
            Ok(()) => 0,
            Err(e) => {
                if !e.is_empty() {
                    let _ = writeln!(io.stderr, "{e}");
                }
                1
            }
        }
    }
}

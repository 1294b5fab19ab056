//! Scenario 2, server signing throughput as agents see it: BatchNewX509SVID (batches of 1 and 100)
//! and NewJWTSVID over the server's TLS port, with the SVIDs of agents attested by join
//! token, with 1 and 8 concurrent agents (one connection each); compared with the crypto
//! limit of the machine (P-256 sign + CSR verify, every core busy). Also MintX509SVID, the
//! admin API's signing call, over the UNIX socket with 1 and 8 concurrent clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use spiffe_core::{KeyType, PrivateKey};
use spire_proto::spire::api::server::svid::v1 as svidv1;
use tonic::transport::Channel;

use super::Ctx;
use crate::clients::{self, Admin, AgentSvid};
use crate::procs::{Implementation, Server, cpu_seconds};
use crate::report::{Goal, Metrics, Section, Unit, row};

const BATCHES: [usize; 2] = [1, 100];
const AGENTS: [usize; 2] = [1, 8];

/// The crypto work of one X509-SVID signature: verify the CSR (parse + ECDSA verify) and
/// sign a certificate-sized message with P-256. Returns (per core, whole machine) per second
/// with every core busy.
pub(crate) fn crypto_limit(secs: f64) -> Result<(f64, f64)> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let csr = spire_pki::make_csr(PrivateKey::generate(KeyType::EcP256)?, None)?;
    let tbs = vec![0x5au8; 480];
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let total = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..cores {
        let (csr, tbs, total) = (csr.clone(), tbs.clone(), total.clone());
        threads.push(std::thread::spawn(move || -> Result<()> {
            let key = PrivateKey::generate(KeyType::EcP256)?;
            let mut n = 0u64;
            while Instant::now() < stop {
                spire_pki::parse_csr(&csr)?;
                key.sign_x509(&tbs)?;
                n += 1;
            }
            total.fetch_add(n, Ordering::Relaxed);
            Ok(())
        }));
    }
    for t in threads {
        match t.join() {
            Ok(r) => r?,
            Err(_) => bail!("crypto limit thread failed"),
        }
    }
    let machine = total.load(Ordering::Relaxed) as f64 / secs;
    Ok((machine / cores as f64, machine))
}

/// The JWT crypto limit: P-256 JWS signatures per second, every core busy.
pub(crate) fn jwt_limit(secs: f64) -> Result<f64> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let total = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..cores {
        let total = total.clone();
        threads.push(std::thread::spawn(move || -> Result<()> {
            let key = PrivateKey::generate(KeyType::EcP256)?;
            let msg = vec![0x5au8; 200];
            let mut n = 0u64;
            while Instant::now() < stop {
                key.sign_jws(spiffe_core::JwsAlgorithm::ES256, &msg)?;
                n += 1;
            }
            total.fetch_add(n, Ordering::Relaxed);
            Ok(())
        }));
    }
    for t in threads {
        match t.join() {
            Ok(r) => r?,
            Err(_) => bail!("crypto limit thread failed"),
        }
    }
    Ok(total.load(Ordering::Relaxed) as f64 / secs)
}

/// One attested agent with the entries it may sign for.
struct SigningAgent {
    channel: Channel,
    /// Its own connection to the admin socket, for MintX509SVID.
    admin: Channel,
    entry_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
enum Work {
    X509 { batch: usize },
    Jwt,
    Mint,
}

/// Runs `work` from `agents.len()` concurrent clients for `secs` (after a short warm-up);
/// returns signatures per second.
/// What one measurement gives.
struct Throughput {
    /// Signatures per second.
    rate: f64,
    /// Server CPU seconds per signature.
    server_cpu: f64,
    /// Share of the machine's CPU the load generator (this process) used.
    load_share: f64,
}

async fn throughput(
    server: &Server,
    agents: &[SigningAgent],
    csrs: &Arc<Vec<Vec<u8>>>,
    mint_csrs: &Arc<Vec<Vec<u8>>>,
    work: Work,
    secs: f64,
) -> Result<Throughput> {
    let warmup = Duration::from_secs_f64((secs / 5.0).min(2.0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for a in agents {
        let mut client = svidv1::svid_client::SvidClient::new(a.channel.clone())
            .max_decoding_message_size(clients::MAX_MESSAGE);
        let mut admin = svidv1::svid_client::SvidClient::new(a.admin.clone())
            .max_decoding_message_size(clients::MAX_MESSAGE);
        let ids = a.entry_ids.clone();
        let csrs = csrs.clone();
        let mint_csrs = mint_csrs.clone();
        let (measuring, stop, done) = (measuring.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_add(1);
                let signed = match work {
                    Work::X509 { batch } => {
                        let params = ids
                            .iter()
                            .zip(csrs.iter())
                            .take(batch)
                            .map(|(id, csr)| svidv1::NewX509svidParams {
                                entry_id: id.clone(),
                                csr: csr.clone(),
                            })
                            .collect();
                        let resp = clients::timed(
                            "BatchNewX509SVID",
                            client.batch_new_x509svid(svidv1::BatchNewX509svidRequest { params }),
                        )
                        .await?
                        .into_inner();
                        for r in &resp.results {
                            if let Some(s) = &r.status
                                && s.code != 0
                            {
                                bail!("BatchNewX509SVID: {} {}", s.code, s.message);
                            }
                            if r.svid.is_none() {
                                bail!("BatchNewX509SVID: result without an SVID");
                            }
                        }
                        resp.results.len() as u64
                    }
                    Work::Jwt => {
                        let resp = clients::timed(
                            "NewJWTSVID",
                            client.new_jwtsvid(svidv1::NewJwtsvidRequest {
                                entry_id: ids.first().cloned().unwrap_or_default(),
                                audience: vec!["bench".into()],
                            }),
                        )
                        .await?;
                        if resp.get_ref().svid.is_none() {
                            bail!("NewJWTSVID: no SVID");
                        }
                        1
                    }
                    Work::Mint => {
                        let csr = mint_csrs
                            .get(n % mint_csrs.len().max(1))
                            .cloned()
                            .unwrap_or_default();
                        let resp = clients::timed(
                            "MintX509SVID",
                            admin.mint_x509svid(svidv1::MintX509svidRequest { csr, ttl: 0 }),
                        )
                        .await?;
                        if resp.get_ref().svid.is_none() {
                            bail!("MintX509SVID: no SVID");
                        }
                        1
                    }
                };
                if measuring.load(Ordering::Relaxed) {
                    done.fetch_add(signed, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(warmup).await;
    let (server0, self0) = (server.proc.cpu_seconds()?, cpu_seconds(None)?);
    measuring.store(true, Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = t.elapsed().as_secs_f64();
    let (server1, self1) = (server.proc.cpu_seconds()?, cpu_seconds(None)?);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let signed = done.load(Ordering::Relaxed) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    Ok(Throughput {
        rate: signed / elapsed,
        server_cpu: (server1 - server0) / signed.max(1.0),
        load_share: (self1 - self0) / (elapsed * cores),
    })
}

async fn measure(imp: Implementation, secs: f64, limits: (f64, f64)) -> Result<Metrics> {
    let max_agents = AGENTS.iter().copied().max().unwrap_or(1);
    let max_batch = BATCHES.iter().copied().max().unwrap_or(1);
    let server = Server::start(&imp).await?;
    let admin = Admin::connect(&server.socket).await?;
    let bundle = admin.bundle().await?;
    let mut agents = Vec::new();
    for a in 0..max_agents {
        let token = admin.join_token().await?;
        let svid: AgentSvid = clients::attest(&server.address(), &bundle, &token).await?;
        let entries = (0..max_batch)
            .map(|i| {
                clients::entry(
                    &svid.path,
                    &format!("/bench/sign/{a}/{i}"),
                    clients::unmatched_selector(i),
                )
            })
            .collect();
        let entry_ids = admin.create_entries(entries).await?;
        agents.push(SigningAgent {
            channel: clients::agent_channel(&server.address(), &bundle, &svid)?,
            admin: clients::uds_channel(&server.socket).await?,
            entry_ids,
        });
    }
    // Wait until the server signs for every entry (SPIRE's server sees new entries when its
    // entry cache next refreshes, within 5 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    for a in &agents {
        let mut client = svidv1::svid_client::SvidClient::new(a.channel.clone());
        let probe = spire_pki::make_csr(PrivateKey::generate(KeyType::EcP256)?, None)?;
        loop {
            let params = a
                .entry_ids
                .iter()
                .map(|id| svidv1::NewX509svidParams {
                    entry_id: id.clone(),
                    csr: probe.clone(),
                })
                .collect();
            let resp = clients::timed(
                "BatchNewX509SVID",
                client.batch_new_x509svid(svidv1::BatchNewX509svidRequest { params }),
            )
            .await?
            .into_inner();
            let refused = resp
                .results
                .iter()
                .find_map(|r| r.status.as_ref().filter(|s| s.code != 0));
            match refused {
                None => break,
                Some(s) if Instant::now() > deadline => {
                    bail!(
                        "BatchNewX509SVID still refused after 60 s: {} {}",
                        s.code,
                        s.message
                    )
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    // Distinct keys, as agents send; made before measuring so the load generator's own
    // key generation is not in the figures.
    let csrs = Arc::new(
        (0..max_batch)
            .map(|_| {
                Ok(spire_pki::make_csr(
                    PrivateKey::generate(KeyType::EcP256)?,
                    None,
                )?)
            })
            .collect::<Result<Vec<_>>>()?,
    );
    // MintX509SVID takes the SPIFFE ID from the CSR's URI SAN.
    let mint_csrs = Arc::new(
        (0..max_batch)
            .map(|i| {
                let id = spiffe_core::SpiffeId::parse(&format!(
                    "spiffe://{}/bench/mint/{i}",
                    crate::procs::TRUST_DOMAIN
                ))?;
                Ok(spire_pki::make_csr(
                    PrivateKey::generate(KeyType::EcP256)?,
                    Some(&id),
                )?)
            })
            .collect::<Result<Vec<_>>>()?,
    );
    let mut m = Metrics::default();
    for batch in BATCHES {
        for n in AGENTS {
            let t = throughput(
                &server,
                agents.get(..n).unwrap_or(&agents[..]),
                &csrs,
                &mint_csrs,
                Work::X509 { batch },
                secs,
            )
            .await?;
            m.set(format!("x509.b{batch}.a{n}"), t.rate);
            m.set(format!("x509.b{batch}.a{n}.limit"), t.rate / limits.1);
            m.set(format!("x509.b{batch}.a{n}.cpu"), t.server_cpu);
            m.set(format!("x509.b{batch}.a{n}.load"), t.load_share);
        }
    }
    for n in AGENTS {
        let t = throughput(
            &server,
            agents.get(..n).unwrap_or(&agents[..]),
            &csrs,
            &mint_csrs,
            Work::Jwt,
            secs,
        )
        .await?;
        m.set(format!("jwt.a{n}"), t.rate);
        m.set(format!("jwt.a{n}.cpu"), t.server_cpu);
    }
    for n in AGENTS {
        let t = throughput(
            &server,
            agents.get(..n).unwrap_or(&agents[..]),
            &csrs,
            &mint_csrs,
            Work::Mint,
            secs,
        )
        .await?;
        m.set(format!("mint.a{n}"), t.rate);
        m.set(format!("mint.a{n}.limit"), t.rate / limits.1);
        m.set(format!("mint.a{n}.cpu"), t.server_cpu);
    }
    server.proc.stop().await;
    Ok(m)
}

pub(crate) async fn run(ctx: &Ctx) -> Section {
    let secs = ctx.sizes.sign_secs;
    let limit_secs = secs.clamp(1.0, 5.0);
    let limits = crypto_limit(limit_secs);
    let jwt = jwt_limit(limit_secs);
    let mut notes = Vec::new();
    let limits = match limits {
        Ok(l) => {
            notes.push(format!(
                "Crypto limit on this machine (P-256 CSR parse+verify and P-256 sign of a \
                 480-byte message, all {} cores busy, aws-lc-rs): {:.0}/s per core, \
                 {:.0}/s for the machine ({:.0} µs of CPU per SVID). The fractions are of \
                 the machine figure; the load generator shares the same cores (its share \
                 is in the table). Server CPU time per SVID is user + system time of the \
                 server process over the measurement, divided by the SVIDs signed.",
                std::thread::available_parallelism().map_or(1, |n| n.get()),
                l.0,
                l.1,
                1e6 / l.0
            ));
            l
        }
        Err(e) => {
            notes.push(format!("Crypto limit not measured: {e:#}"));
            (f64::NAN, f64::NAN)
        }
    };
    if let Ok(j) = jwt {
        notes.push(format!(
            "JWT crypto limit (P-256 JWS signatures, all cores busy): {j:.0}/s."
        ));
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    // One group of rows per measurement: the rate, then what each key measured of it.
    let group = |key: String, label: String, unit: &'static str, extras: &[&str]| {
        let mut rows =
            vec![row(key.clone(), label, Unit::Rate(unit)).goal(Goal::RatioAtLeast(2.0))];
        for extra in extras {
            let r = match *extra {
                "limit" => row(
                    format!("{key}.limit"),
                    "… as a fraction of the machine's crypto limit",
                    Unit::Fraction,
                ),
                "cpu" => row(
                    format!("{key}.cpu"),
                    format!("… server CPU time per {}", unit.trim_end_matches("s/s")),
                    Unit::Secs,
                ),
                _ => row(
                    format!("{key}.load"),
                    "… CPU share of the load generator",
                    Unit::Fraction,
                ),
            };
            rows.push(r);
        }
        rows
    };
    let mut rows = Vec::new();
    for batch in BATCHES {
        for n in AGENTS {
            let mut g = group(
                format!("x509.b{batch}.a{n}"),
                format!("BatchNewX509SVID, batch {batch}, {n} agent{}", plural(n)),
                "SVIDs/s",
                &["limit", "cpu", "load"],
            );
            if n > 1
                && let Some(limit) = g.get_mut(1)
            {
                *limit = limit.clone().goal(Goal::AtLeast(0.7));
            }
            rows.extend(g);
        }
    }
    for n in AGENTS {
        rows.extend(group(
            format!("jwt.a{n}"),
            format!("NewJWTSVID, {n} agent{}", plural(n)),
            "JWT-SVIDs/s",
            &["cpu"],
        ));
    }
    for n in AGENTS {
        rows.extend(group(
            format!("mint.a{n}"),
            format!("MintX509SVID (admin socket), {n} client{}", plural(n)),
            "SVIDs/s",
            &["limit", "cpu"],
        ));
    }
    super::section(
        ctx,
        "2. Server signing throughput",
        format!(
            "Agents attested by join token over the server's TLS port; each agent has 100 \
             entries and sends fresh-key CSRs for them over its own mutual-TLS connection, \
             in a closed loop. MintX509SVID runs the same way over the admin UNIX socket, \
             one connection per client, each CSR carrying its SPIFFE ID as a URI SAN. \
             {secs:.0} s per row after a warm-up; rate limits off on both servers \
             (`ratelimit {{ signing = false }}`)."
        ),
        rows,
        notes,
        |imp| measure(imp, secs, limits),
    )
    .await
}

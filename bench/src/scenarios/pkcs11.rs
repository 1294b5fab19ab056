//! Scenario 12, the CA key in a PKCS#11 token: X509-SVID signing (MintX509SVID on the admin
//! socket, one CA signature per call) with the server's keys on disk and with them in
//! SoftHSM2 through KeyManager `pkcs11`, a spire-rs extension. Reference SPIRE has no
//! PKCS#11 KeyManager, so it runs the disk rows only: those compare the two
//! implementations, the SoftHSM rows compare our two KeyManagers.
//!
//! Each throughput figure is the median of several consecutive windows of a closed loop
//! (1 or 8 clients, one connection each); latencies are of sequential calls on one
//! connection. Needs SoftHSM2 (`softhsm2-util`, `/usr/lib/softhsm/libsofthsm2.so`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use spiffe_core::{KeyType, PrivateKey};
use spire_proto::spire::api::server::svid::v1 as svidv1;

use super::Ctx;
use crate::clients;
use crate::procs::{Implementation, Server, ServerOptions, work_dir};
use crate::report::{Metrics, Section, Unit, percentile, row};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const CLIENTS: [usize; 2] = [1, 8];
const WINDOWS: usize = 5;
const PIN: &str = "1234";

/// A SoftHSM token in its own directory; the block and environment that point a server at
/// it.
struct Token {
    _dir: tempfile::TempDir,
    conf: String,
    block: String,
}

fn softhsm_missing() -> Option<String> {
    if !Path::new(MODULE).exists() {
        return Some(format!("{MODULE} is missing (Debian: softhsm2)"));
    }
    match std::process::Command::new("softhsm2-util")
        .arg("--version")
        .output()
    {
        Ok(_) => None,
        Err(_) => Some("softhsm2-util is not installed (Debian: softhsm2)".into()),
    }
}

fn token() -> Result<Token> {
    let dir = tempfile::Builder::new()
        .prefix("spire-bench-hsm-")
        .tempdir_in(work_dir())?;
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens)?;
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )?;
    let out = std::process::Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--pin",
            PIN,
            "--so-pin",
            "000000",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .context("softhsm2-util")?;
    if !out.status.success() {
        bail!(
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let block = format!(
        "KeyManager \"pkcs11\" {{\n        plugin_data {{\n            module_path = \"{MODULE}\"\n            token_label = \"bench\"\n            user_pin = \"{PIN}\"\n        }}\n    }}"
    );
    Ok(Token {
        conf: conf.display().to_string(),
        _dir: dir,
        block,
    })
}

fn mint_csrs(n: usize) -> Result<Arc<Vec<Vec<u8>>>> {
    let csrs = (0..n)
        .map(|i| {
            let id = spiffe_core::SpiffeId::parse(&format!(
                "spiffe://{}/bench/pkcs11/{i}",
                crate::procs::TRUST_DOMAIN
            ))?;
            Ok(spire_pki::make_csr(
                PrivateKey::generate(KeyType::EcP256)?,
                Some(&id),
            )?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(csrs))
}

async fn mint_client(
    socket: &Path,
) -> Result<svidv1::svid_client::SvidClient<tonic::transport::Channel>> {
    Ok(
        svidv1::svid_client::SvidClient::new(clients::uds_channel(socket).await?)
            .max_decoding_message_size(clients::MAX_MESSAGE),
    )
}

async fn mint_once(
    client: &mut svidv1::svid_client::SvidClient<tonic::transport::Channel>,
    csr: Vec<u8>,
) -> Result<()> {
    let resp = clients::timed(
        "MintX509SVID",
        client.mint_x509svid(svidv1::MintX509svidRequest { csr, ttl: 0 }),
    )
    .await?;
    if resp.get_ref().svid.is_none() {
        bail!("MintX509SVID: no SVID");
    }
    Ok(())
}

/// Median over `WINDOWS` windows of `secs / WINDOWS` each of SVIDs per second, `n` clients
/// in a closed loop.
async fn throughput(socket: &Path, csrs: &Arc<Vec<Vec<u8>>>, n: usize, secs: f64) -> Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..n {
        let mut client = mint_client(socket).await?;
        let (stop, done, csrs) = (stop.clone(), done.clone(), csrs.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let csr = csrs.get(i % csrs.len().max(1)).cloned().unwrap_or_default();
                mint_once(&mut client, csr).await?;
                done.fetch_add(1, Ordering::Relaxed);
                i = i.wrapping_add(n);
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64((secs / 5.0).clamp(0.2, 2.0))).await;
    let window = Duration::from_secs_f64(secs / WINDOWS as f64);
    let mut rates = Vec::with_capacity(WINDOWS);
    for _ in 0..WINDOWS {
        let (n0, t0) = (done.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(window).await;
        let (n1, t1) = (done.load(Ordering::Relaxed), t0.elapsed());
        rates.push((n1 - n0) as f64 / t1.as_secs_f64());
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    rates.sort_by(f64::total_cmp);
    Ok(percentile(&rates, 50.0))
}

/// Sorted latencies of `calls` sequential calls after `warmup` untimed ones.
async fn latencies(
    socket: &Path,
    csrs: &Arc<Vec<Vec<u8>>>,
    calls: usize,
    warmup: usize,
) -> Result<Vec<f64>> {
    let mut client = mint_client(socket).await?;
    let mut samples = Vec::with_capacity(calls);
    for i in 0..warmup + calls {
        let csr = csrs.get(i % csrs.len().max(1)).cloned().unwrap_or_default();
        let t = Instant::now();
        mint_once(&mut client, csr).await?;
        if i >= warmup {
            samples.push(t.elapsed().as_secs_f64());
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

/// Measures one server configuration into `m` under `prefix` (`disk`, `pkcs11`); returns
/// the figures by their key without the prefix.
async fn measure_one(
    imp: &Implementation,
    opts: ServerOptions,
    prefix: &str,
    m: &mut Metrics,
    secs: f64,
    calls: usize,
    warmup: usize,
) -> Result<Vec<(String, f64)>> {
    let mut figures = Vec::new();
    let mut server = Server::spawn(imp, &opts)?;
    server.wait_ready(Duration::from_secs(60)).await?;
    let csrs = mint_csrs(64)?;
    let lat = latencies(&server.socket, &csrs, calls, warmup).await?;
    figures.push(("p50".to_string(), percentile(&lat, 50.0)));
    figures.push(("p99".to_string(), percentile(&lat, 99.0)));
    for n in CLIENTS {
        figures.push((
            format!("a{n}"),
            throughput(&server.socket, &csrs, n, secs).await?,
        ));
    }
    server.proc.stop().await;
    for (k, v) in &figures {
        m.set(format!("{prefix}.{k}"), *v);
    }
    Ok(figures)
}

async fn measure(
    imp: Implementation,
    ours: bool,
    secs: f64,
    calls: usize,
    warmup: usize,
) -> Result<Metrics> {
    let mut m = Metrics::default();
    let disk = measure_one(
        &imp,
        ServerOptions::default(),
        "disk",
        &mut m,
        secs,
        calls,
        warmup,
    )
    .await?;
    let keys = [
        "pkcs11.p50",
        "pkcs11.p99",
        "pkcs11.a1",
        "pkcs11.a8",
        "ratio.a1",
        "ratio.a8",
        "ratio.p50",
    ];
    if !ours {
        for k in keys {
            m.missing(k, "no PKCS#11 KeyManager");
        }
        return Ok(m);
    }
    if let Some(why) = softhsm_missing() {
        bail!("{why}");
    }
    let token = token()?;
    let opts = ServerOptions {
        key_manager: Some(token.block.clone()),
        env: vec![("SOFTHSM2_CONF".into(), token.conf.clone())],
        ..ServerOptions::default()
    };
    let hsm = measure_one(&imp, opts, "pkcs11", &mut m, secs, calls, warmup).await?;
    for ((k, d), (_, p)) in disk.iter().zip(&hsm) {
        if k != "p99" && *d > 0.0 {
            m.set(format!("ratio.{k}"), p / d);
        }
    }
    Ok(m)
}

pub(crate) async fn run(ctx: &Ctx) -> Section {
    let s = &ctx.sizes;
    let (secs, calls, warmup) = (s.sign_secs, s.latency_calls.min(2_000), s.latency_warmup);
    let mut rows = Vec::new();
    for (prefix, what) in [
        ("disk", "disk KeyManager"),
        ("pkcs11", "pkcs11 KeyManager, SoftHSM2"),
    ] {
        for n in CLIENTS {
            rows.push(row(
                format!("{prefix}.a{n}"),
                format!(
                    "MintX509SVID, {n} client{}, {what} (median of {WINDOWS} windows)",
                    if n == 1 { "" } else { "s" }
                ),
                Unit::Rate("SVIDs/s"),
            ));
        }
        rows.push(row(
            format!("{prefix}.p50"),
            format!("MintX509SVID p50, {what}"),
            Unit::Secs,
        ));
        rows.push(row(
            format!("{prefix}.p99"),
            format!("MintX509SVID p99, {what}"),
            Unit::Secs,
        ));
    }
    for n in CLIENTS {
        rows.push(row(
            format!("ratio.a{n}"),
            format!(
                "… SoftHSM2 ÷ disk throughput, {n} client{}",
                if n == 1 { "" } else { "s" }
            ),
            Unit::Fraction,
        ));
    }
    rows.push(row(
        "ratio.p50",
        "… SoftHSM2 ÷ disk p50 latency",
        Unit::Fraction,
    ));
    let ours_name = ctx.ours.name;
    super::section(
        ctx,
        "12. CA key in a PKCS#11 token",
        format!(
            "One server, ec-p256 CA; MintX509SVID on the admin socket (a CA signature per \
             call) in a closed loop with 1 and 8 clients, {secs:.0} s per row after a \
             warm-up, reported as the median of {WINDOWS} equal windows; {calls} sequential \
             calls after {warmup} untimed ones for the latencies. First with the `disk` \
             KeyManager (both implementations), then with spire-rs's `pkcs11` KeyManager on a \
             SoftHSM2 token (reference SPIRE has none): the digest is made in the server, the \
             token signs it (`CKM_ECDSA`) in one of up to 8 pooled sessions."
        ),
        rows,
        Vec::new(),
        |imp| {
            let ours = imp.name == ours_name;
            measure(imp, ours, secs, calls, warmup)
        },
    )
    .await
}

//! Benchmark harness for spire-rs against reference SPIRE.
//!
//! Each scenario starts the server binary under test on a temp dir (SQLite, disk
//! KeyManager, the same configuration for both implementations), drives it over its UNIX
//! socket with tonic clients, and reports medians over repeated runs. With `--reference`
//! the same scenario runs against reference SPIRE too and the ratio is printed.
//!
//! ```text
//! spire-bench server [--entries N] [--runs R] [--mint-secs S] [--concurrency C]
//!                    [--ours PATH] [--reference PATH]
//! ```
//! Output is a Markdown table on stdout (copied into bench/RESULTS.md).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line report"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hyper_util::rt::TokioIo;
use spiffe_core::{KeyType, PrivateKey, SpiffeId};
use spire_proto::spire::api::server::bundle::v1::GetBundleRequest;
use spire_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use spire_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use spire_proto::spire::api::server::entry::v1::{BatchCreateEntryRequest, ListEntriesRequest};
use spire_proto::spire::api::server::svid::v1::MintX509svidRequest;
use spire_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use spire_proto::spire::api::types;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

struct Server {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn channel(path: &Path) -> Result<Channel> {
    let path = path.to_path_buf();
    Ok(Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await?)
}

async fn start(bin: &Path) -> Result<Server> {
    let dir = tempfile::tempdir()?;
    let d = dir.path().display();
    let socket = dir.path().join("api.sock");
    let conf = format!(
        r#"server {{
    bind_address = "127.0.0.1"
    bind_port = "{port}"
    socket_path = "{sock}"
    trust_domain = "example.org"
    data_dir = "{d}/data"
    log_level = "WARN"
}}
plugins {{
    DataStore "sql" {{
        plugin_data {{
            database_type = "sqlite3"
            connection_string = "{d}/data/datastore.sqlite3"
        }}
    }}
    KeyManager "disk" {{
        plugin_data {{
            keys_path = "{d}/data/keys.json"
        }}
    }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
}}
"#,
        port = free_port()?,
        sock = socket.display(),
    );
    std::fs::write(dir.path().join("server.conf"), conf)?;
    let child = Command::new(bin)
        .args(["run", "-config"])
        .arg(dir.path().join("server.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let server = Server {
        _dir: dir,
        socket,
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(ch) = channel(&server.socket).await
            && BundleClient::new(ch)
                .get_bundle(GetBundleRequest::default())
                .await
                .is_ok()
        {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("{} did not start", bin.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn entry(i: usize) -> types::Entry {
    let id = |p: String| {
        Some(types::Spiffeid {
            trust_domain: "example.org".into(),
            path: p,
        })
    };
    types::Entry {
        parent_id: id(format!("/spire/agent/bench/{}", i % 100)),
        spiffe_id: id(format!("/workload/{i}")),
        selectors: vec![types::Selector {
            r#type: "unix".into(),
            value: format!("uid:{i}"),
        }],
        ..Default::default()
    }
}

/// Per-implementation figures of the server scenario.
#[derive(Debug, Default, Clone, Copy)]
struct ServerFigures {
    create_secs: f64,
    list_secs: f64,
    mints_per_sec: f64,
}

async fn server_scenario(
    bin: &Path,
    entries: usize,
    mint_secs: u64,
    concurrency: usize,
) -> Result<ServerFigures> {
    let server = start(bin).await?;
    let ch = channel(&server.socket).await?;
    let mut ec = EntryClient::new(ch.clone()).max_decoding_message_size(1 << 30);

    // BatchCreateEntry in batches of 50, as `spire-server entry create -data` sends them.
    let t = Instant::now();
    let mut i = 0;
    while i < entries {
        let n = (entries - i).min(50);
        let batch = (i..i + n).map(entry).collect();
        let resp = ec
            .batch_create_entry(BatchCreateEntryRequest {
                entries: batch,
                output_mask: None,
            })
            .await?;
        if resp
            .get_ref()
            .results
            .iter()
            .any(|r| r.status.as_ref().is_some_and(|s| s.code != 0))
        {
            bail!("entry creation failed");
        }
        i += n;
    }
    let create_secs = t.elapsed().as_secs_f64();

    // ListEntries of everything, paged as the CLI pages (pages of 500 entries).
    let t = Instant::now();
    let mut token = String::new();
    let mut listed = 0;
    loop {
        let resp = ec
            .list_entries(ListEntriesRequest {
                page_size: 500,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        listed += resp.entries.len();
        if resp.next_page_token.is_empty() || resp.entries.is_empty() {
            break;
        }
        token = resp.next_page_token;
    }
    let list_secs = t.elapsed().as_secs_f64();
    if listed != entries {
        bail!("listed {listed} of {entries} entries");
    }

    // MintX509SVID throughput with `concurrency` clients.
    let id = SpiffeId::parse("spiffe://example.org/bench")?;
    let csr = spire_pki::make_csr(PrivateKey::generate(KeyType::EcP256)?, Some(&id))?;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(mint_secs);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let mut sc = SvidClient::new(ch.clone());
        let csr = csr.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                if sc
                    .mint_x509svid(MintX509svidRequest {
                        csr: csr.clone(),
                        ttl: 3600,
                    })
                    .await
                    .is_ok()
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let t = Instant::now();
    for task in tasks {
        task.await?;
    }
    let mints_per_sec = done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    Ok(ServerFigures {
        create_secs,
        list_secs,
        mints_per_sec,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

struct Args {
    entries: usize,
    runs: usize,
    mint_secs: u64,
    concurrency: usize,
    ours: PathBuf,
    reference: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        entries: 100_000,
        runs: 3,
        mint_secs: 10,
        concurrency: 8,
        ours: PathBuf::from("target/release/spire-server"),
        reference: None,
    };
    let mut it = std::env::args().skip(1);
    match it.next().as_deref() {
        Some("server") => {}
        _ => bail!(
            "usage: spire-bench server [--entries N] [--runs R] [--mint-secs S] [--concurrency C] [--ours PATH] [--reference PATH]"
        ),
    }
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--entries" => a.entries = value.parse()?,
            "--runs" => a.runs = value.parse()?,
            "--mint-secs" => a.mint_secs = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            "--ours" => a.ours = PathBuf::from(value),
            "--reference" => a.reference = Some(PathBuf::from(value)),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

async fn medians(bin: &Path, a: &Args) -> Result<ServerFigures> {
    let mut runs = Vec::new();
    for r in 0..a.runs {
        eprintln!("{}: run {}/{}", bin.display(), r + 1, a.runs);
        runs.push(server_scenario(bin, a.entries, a.mint_secs, a.concurrency).await?);
    }
    Ok(ServerFigures {
        create_secs: median(runs.iter().map(|f| f.create_secs).collect()),
        list_secs: median(runs.iter().map(|f| f.list_secs).collect()),
        mints_per_sec: median(runs.iter().map(|f| f.mints_per_sec).collect()),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = parse_args()?;
    let ours = medians(&a.ours, &a).await?;
    let reference = match &a.reference {
        Some(r) => Some(medians(r, &a).await?),
        None => None,
    };
    println!(
        "Server scenario: {} entries, median of {} runs, mint for {} s with {} clients (SQLite, ec-p256).\n",
        a.entries, a.runs, a.mint_secs, a.concurrency
    );
    println!("| metric | reference SPIRE | spire-rs | spire-rs speed-up |");
    println!("|---|---|---|---|");
    let row = |name: &str, r: Option<f64>, o: f64, unit: &str, higher_better: bool| {
        let (rs, ratio) = match r {
            Some(r) => {
                let ratio = if higher_better { o / r } else { r / o };
                (format!("{r:.2} {unit}"), format!("{ratio:.2}x"))
            }
            None => ("not run".into(), "-".into()),
        };
        println!("| {name} | {rs} | {o:.2} {unit} | {ratio} |");
    };
    let entries_per_sec = |f: &ServerFigures| a.entries as f64 / f.create_secs;
    row(
        "BatchCreateEntry throughput",
        reference.as_ref().map(entries_per_sec),
        entries_per_sec(&ours),
        "entries/s",
        true,
    );
    row(
        "ListEntries (all, pages of 500)",
        reference.map(|r| r.list_secs),
        ours.list_secs,
        "s",
        false,
    );
    row(
        "MintX509SVID",
        reference.map(|r| r.mints_per_sec),
        ours.mints_per_sec,
        "SVIDs/s",
        true,
    );
    Ok(())
}

//! Benchmark harness: reference SPIRE and spire-rs, in turn, with the same configuration
//! (SQLite datastore, ec-p256, the same TTLs), driven over their real sockets and ports by
//! tonic clients in this process.
//!
//! ```text
//! spire-bench all|SCENARIO[,SCENARIO...] [--smoke | --large] [--reference-dir DIR]
//!             [--ours-dir DIR] [--out FILE] [--cache-dir DIR] [size overrides]
//! ```
//! Scenarios: footprint, workload, signing, propagation, scale, coldstart, plugins, k8s, docker, sds,
//! telemetry, pkcs11, cloud, federation, fleet, ha, failover. The report
//! (Markdown) goes to stdout and, with `--out`, to a file; text in that file below the
//! "kept" marker survives a rewrite. Exits non-zero if any scenario failed (in `--smoke`,
//! also if any spire-rs figure is missing).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line report"
)]

mod clients;
mod procs;
mod relay;
mod report;
mod scenarios;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::procs::Implementation;
use crate::report::Section;
use crate::scenarios::{Ctx, Sizes};

const SCENARIOS: [&str; 17] = [
    "footprint",
    "workload",
    "signing",
    "propagation",
    "scale",
    "coldstart",
    "plugins",
    "k8s",
    "docker",
    "sds",
    "telemetry",
    "pkcs11",
    "cloud",
    "federation",
    "fleet",
    "ha",
    "failover",
];

/// The line of RESULTS.md after which text is kept when the harness rewrites the file.
const KEEP_MARKER: &str = "<!-- Text below this line is written by hand and kept when the harness rewrites this file. -->";

const USAGE: &str = "usage: spire-bench all|SCENARIO[,SCENARIO...] [--smoke | --large]
        [--reference-dir DIR] [--ours-dir DIR] [--out FILE] [--cache-dir DIR]
        [--work-dir DIR] [--calls N] [--sign-secs S] [--samples N] [--entries N] [--agent-entries N]
        [--svids N] [--starts N] [--cold-entries N] [--cold-timeout-min M] [--agents N]
scenarios: footprint, workload, signing, propagation, scale, coldstart, plugins, k8s, docker, sds,
telemetry, pkcs11, cloud, federation, fleet, ha, failover
(cloud's aws_iid rows need Python for moto: conformance/moto/setup.sh; ha needs SPIRE_RS_TEST_POSTGRES_URL: scripts/test-databases.sh; failover needs root and PostgreSQL's binaries; pkcs11 needs Debian's softhsm2; plugins needs SPIRE_RS_GOPLUGINS_DIR: conformance/goplugins/build.sh; k8s and docker need
root; docker needs Debian's docker.io)";

static START: OnceLock<Instant> = OnceLock::new();

/// Progress on stderr, stamped with the time since the harness started.
pub(crate) fn log(msg: &str) {
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[{t:7.1}s] {msg}");
}

#[derive(Debug)]
struct Args {
    scenarios: Vec<String>,
    smoke: bool,
    sizes: Sizes,
    reference_dir: Option<PathBuf>,
    ours_dir: Option<PathBuf>,
    out: Option<PathBuf>,
    cache_dir: PathBuf,
    work_dir: PathBuf,
}

fn parse_args() -> Result<Args> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.iter().any(|a| a == "-h" || a == "--help") || raw.is_empty() {
        println!("{USAGE}");
        std::process::exit(if raw.is_empty() { 2 } else { 0 });
    }
    let mut it = raw.into_iter();
    let which = it.next().unwrap_or_default();
    let scenarios: Vec<String> = if which == "all" {
        SCENARIOS.iter().map(|s| s.to_string()).collect()
    } else {
        which.split(',').map(str::to_string).collect()
    };
    for s in &scenarios {
        if !SCENARIOS.contains(&s.as_str()) {
            bail!("unknown scenario {s:?}\n{USAGE}");
        }
    }
    let rest: Vec<String> = it.collect();
    let smoke = rest.iter().any(|a| a == "--smoke");
    let large = rest.iter().any(|a| a == "--large");
    if smoke && large {
        bail!("--smoke and --large exclude each other");
    }
    let mut a = Args {
        scenarios,
        smoke,
        sizes: if smoke {
            Sizes::smoke()
        } else if large {
            Sizes::large()
        } else {
            Sizes::default_run()
        },
        reference_dir: None,
        ours_dir: None,
        out: None,
        cache_dir: std::env::temp_dir().join("spire-bench-cache"),
        work_dir: std::env::temp_dir(),
    };
    let mut it = rest
        .into_iter()
        .filter(|f| f != "--smoke" && f != "--large");
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let n = || -> Result<usize> {
            value
                .parse()
                .with_context(|| format!("{flag}: not a number: {value:?}"))
        };
        let s = &mut a.sizes;
        match flag.as_str() {
            "--reference-dir" => a.reference_dir = Some(PathBuf::from(&value)),
            "--ours-dir" => a.ours_dir = Some(PathBuf::from(&value)),
            "--out" => a.out = Some(PathBuf::from(&value)),
            "--cache-dir" => a.cache_dir = PathBuf::from(&value),
            "--work-dir" => a.work_dir = PathBuf::from(&value),
            "--calls" => s.latency_calls = n()?,
            "--sign-secs" => {
                s.sign_secs = value
                    .parse()
                    .with_context(|| format!("--sign-secs: {value:?}"))?
            }
            "--samples" => s.propagation_samples = n()?,
            "--entries" => s.scale_entries = n()?,
            "--agent-entries" => s.scale_small_agent = n()?,
            "--svids" => s.footprint_svids = n()?,
            "--starts" => s.starts = n()?.max(1),
            "--cold-entries" => s.cold_entries = n()?,
            "--cold-timeout-min" => s.cold_timeout = Duration::from_secs(60 * n()? as u64),
            "--agents" => s.fleet_agents = n()?,
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    if a.sizes.scale_entries < 1 || a.sizes.scale_small_agent < 1 || a.sizes.footprint_svids < 1 {
        bail!("entry counts must be at least 1");
    }
    Ok(a)
}

/// Our binaries: `--ours-dir`, else next to this executable (cargo puts all three in the
/// same target directory), else `target/release`.
fn ours_dir(arg: Option<&Path>) -> PathBuf {
    if let Some(d) = arg {
        return d.to_path_buf();
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
        && dir.join("spire-server").is_file()
        && dir.join("spire-agent").is_file()
    {
        return dir.to_path_buf();
    }
    PathBuf::from("target/release")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn command_output(cmd: &Path, args: &[&str]) -> String {
    match std::process::Command::new(cmd).args(args).output() {
        Ok(o) => {
            let mut s = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if s.is_empty() {
                s = String::from_utf8_lossy(&o.stderr).trim().to_string();
            }
            s
        }
        Err(e) => format!("({e})"),
    }
}

fn load() -> String {
    let out = command_output(Path::new("uptime"), &[]);
    if out.starts_with('(') {
        read("/proc/loadavg").trim().to_string()
    } else {
        out
    }
}

fn machine(ctx: &Ctx) -> String {
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown");
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| format!("{:.1} GiB", k / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "unknown".into());
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_else(|| "unknown".into());
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    let mut s = format!(
        "- CPU: {model}, {cpus} logical CPUs\n- Memory: {mem}\n- OS: {os}, Linux {kernel}\n"
    );
    let commit = command_output(Path::new("git"), &["rev-parse", "--short", "HEAD"]);
    let dirty = !command_output(Path::new("git"), &["status", "--porcelain"]).is_empty();
    s.push_str(&format!(
        "- spire-rs: `{}` ({}; source tree at commit {commit}{})\n",
        ctx.ours.server.display(),
        command_output(&ctx.ours.server, &["--version"]),
        if dirty {
            " with uncommitted changes"
        } else {
            ""
        }
    ));
    match &ctx.reference {
        Some(r) => s.push_str(&format!(
            "- reference SPIRE: `{}` ({})\n",
            r.server.display(),
            command_output(&r.server, &["--version"])
        )),
        None => s.push_str("- reference SPIRE: not run (no `--reference-dir`)\n"),
    }
    s
}

fn header(ctx: &Ctx, args: &Args, load_before: &str, took: f64) -> String {
    let mode = if args.smoke { " (smoke sizes)" } else { "" };
    let mut s = String::from("# Benchmark results\n\n");
    s.push_str(&format!(
        "Written by `spire-bench {}{}` in {:.1} min; see the README's Benchmarks section for \
         how to run it. Each implementation runs alone on the machine: reference SPIRE \
         first, then spire-rs, for every scenario. The load generator runs on the same \
         cores.{mode}\n\n",
        args.scenarios.join(","),
        if args.smoke { " --smoke" } else { "" },
        took / 60.0
    ));
    s.push_str("## Machine\n\n");
    s.push_str(&machine(ctx));
    s.push_str(&format!(
        "- Load before the run (`uptime`): {load_before}\n"
    ));
    s.push_str(&format!("- Load after the run (`uptime`): {}\n", load()));
    s.push_str(
        "\nSame configuration for both implementations: SQLite datastore, disk KeyManager \
         (server) and memory KeyManager (agent), ec-p256 CA, X509-SVID and workload keys, \
         X509-SVID TTL 1 h, JWT-SVID TTL 5 min, CA TTL 168 h, join-token attestation, unix \
         workload attestor, log level WARN, rate limits off. Ratios are spire-rs ÷ \
         reference whatever the direction of \"better\"; goals are those of the issue.\n\n",
    );
    s.push_str(&format!(
        "Data directories (datastores included) are made under `{}`.\n\n",
        procs::work_dir().display()
    ));
    s.push_str("## Results\n\n");
    s
}

/// `generated`, plus the hand-written tail of the existing file at `path`.
fn with_kept_tail(path: &Path, generated: &str) -> String {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let tail = old
        .split_once(KEEP_MARKER)
        .map(|(_, t)| t.to_string())
        .unwrap_or_else(|| "\n\n## Where spire-rs is behind\n\n(Analysis goes here.)\n".into());
    format!("{generated}{KEEP_MARKER}{tail}")
}

async fn run(args: &Args, ctx: &Ctx) -> Vec<Section> {
    let mut out = Vec::new();
    for s in SCENARIOS {
        if !args.scenarios.iter().any(|x| x == s) {
            continue;
        }
        let section = match s {
            "footprint" => scenarios::footprint::run(ctx).await,
            "workload" => scenarios::workload::run(ctx).await,
            "telemetry" => scenarios::telemetry::run(ctx).await,
            "signing" => scenarios::signing::run(ctx).await,
            "plugins" => scenarios::plugins::run(ctx).await,
            "k8s" => scenarios::k8s::run(ctx).await,
            "docker" => scenarios::docker::run(ctx).await,
            "propagation" => scenarios::propagation::run(ctx).await,
            "scale" => scenarios::scale::run(ctx).await,
            "sds" => scenarios::sds::run(ctx).await,
            "pkcs11" => scenarios::pkcs11::run(ctx).await,
            "cloud" => scenarios::cloud::run(ctx).await,
            "federation" => scenarios::federation::run(ctx).await,
            "fleet" => scenarios::fleet::run(ctx).await,
            "ha" => scenarios::ha::run(ctx).await,
            "failover" => scenarios::failover::run(ctx).await,
            _ => scenarios::coldstart::run(ctx).await,
        };
        log(&format!(
            "{} finished in {:.1} s",
            section.title, section.seconds
        ));
        out.push(section);
    }
    out
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match real_main().await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("spire-bench: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Runs the harness; `Ok(false)` when a scenario failed.
async fn real_main() -> Result<bool> {
    let started = *START.get_or_init(Instant::now);
    let args = parse_args()?;
    procs::set_work_dir(args.work_dir.clone());
    let ours_dir = ours_dir(args.ours_dir.as_deref());
    let ours = Implementation::from_dir("spire-rs", &ours_dir).with_context(|| {
        "build them first: cargo build --release -p spire-server -p spire-agent (or pass --ours-dir)"
    })?;
    let reference = match &args.reference_dir {
        Some(d) => Some(Implementation::from_dir("reference SPIRE", d)?),
        None => {
            log("no --reference-dir: reference SPIRE is skipped (its cells say \"not run\")");
            None
        }
    };
    let ctx = Ctx {
        ours,
        reference,
        sizes: args.sizes.clone(),
        cache_dir: args.cache_dir.clone(),
    };
    let load_before = load();
    log(&format!("load: {load_before}"));
    let sections = run(&args, &ctx).await;
    let took = started.elapsed().as_secs_f64();

    let mut md = header(&ctx, &args, &load_before, took);
    for s in &sections {
        md.push_str(&s.markdown());
    }
    println!("{md}");
    if let Some(path) = &args.out {
        std::fs::write(path, with_kept_tail(path, &md))
            .with_context(|| format!("writing {}", path.display()))?;
        log(&format!("wrote {}", path.display()));
    }

    let mut failures: Vec<String> = sections.iter().flat_map(Section::failures).collect();
    if args.smoke {
        failures.extend(sections.iter().flat_map(Section::missing_ours));
    }
    log(&format!("total {:.1} min", took / 60.0));
    for f in &failures {
        eprintln!("FAILED: {f}");
    }
    Ok(failures.is_empty())
}

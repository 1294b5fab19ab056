//! The `process_*` families client_golang's default registry adds to SPIRE's exposition
//! (its process collector), read from `/proc/self` at each scrape. Families whose source
//! cannot be read are left out, as the Go collector does on error.

use std::fmt::Write as _;

/// Linux reports CPU times in `/proc` in USER_HZ, which is 100.
const USER_HZ: f64 = 100.0;

fn family(out: &mut String, name: &str, help: &str, kind: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// The `process_*` families as text.
pub(crate) fn render() -> String {
    let mut out = String::new();
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        family(
            &mut out,
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            (utime + stime) / USER_HZ,
        );
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        let soft = |prefix: &str| -> Option<f64> {
            let line = limits.lines().find(|l| l.starts_with(prefix))?;
            let v = line[prefix.len()..].split_whitespace().next()?;
            Some(if v == "unlimited" {
                -1.0
            } else {
                v.parse().ok()?
            })
        };
        if let Some(v) = soft("Max open files") {
            family(
                &mut out,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                "gauge",
                v,
            );
        }
        if let Some(v) = soft("Max address space") {
            let v = if v < 0.0 { 1.8446744073709552e19 } else { v };
            family(
                &mut out,
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
                "gauge",
                v,
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        family(
            &mut out,
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            fds.count() as f64,
        );
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let kb = |key: &str| -> Option<f64> {
            let line = status.lines().find(|l| l.starts_with(key))?;
            line[key.len()..]
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
                .map(|v| v * 1024.0)
        };
        if let Some(v) = kb("VmRSS:") {
            family(
                &mut out,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                "gauge",
                v,
            );
        }
        if let Some(v) = kb("VmSize:") {
            family(
                &mut out,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                "gauge",
                v,
            );
        }
    }
    let btime = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    if let (Some(btime), Some(start)) = (btime, field(22)) {
        family(
            &mut out,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "gauge",
            btime + start / USER_HZ,
        );
    }
    if let Ok(dev) = std::fs::read_to_string("/proc/self/net/dev") {
        let (mut rx, mut tx) = (0.0, 0.0);
        for line in dev.lines().skip(2) {
            let Some((_, counters)) = line.split_once(':') else {
                continue;
            };
            let v: Vec<f64> = counters
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if v.len() >= 9 {
                rx += v[0];
                tx += v[8];
            }
        }
        family(
            &mut out,
            "process_network_receive_bytes_total",
            "Number of bytes received by the process over the network.",
            "counter",
            rx,
        );
        family(
            &mut out,
            "process_network_transmit_bytes_total",
            "Number of bytes sent by the process over the network.",
            "counter",
            tx,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_families_of_client_golang_are_there() {
        let out = super::render();
        for name in [
            "process_cpu_seconds_total",
            "process_max_fds",
            "process_open_fds",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_start_time_seconds",
        ] {
            assert!(out.contains(&format!("# TYPE {name} ")), "{name}: {out}");
        }
        assert!(!out.contains("NaN"), "{out}");
    }
}

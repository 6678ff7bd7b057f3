//! What the server costs, read from outside: CPU time and RSS from
//! `/proc/<pid>`, counters from its Prometheus `/metrics`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Linux reports utime/stime in USER_HZ ticks, which is 100 on every
/// architecture Linux exposes to user space (the kernel converts internally).
const USER_HZ: f64 = 100.0;

/// utime + stime of a process (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_stat_cpu(&stat).with_context(|| format!("parsing /proc/{pid}/stat"))
}

/// Fields 14 and 15 (utime, stime) of `/proc/<pid>/stat`. The command name
/// (field 2) is in parentheses and may hold spaces, so count after the last ')'.
fn parse_stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// CPU seconds per thread of a process, summed by thread name (e.g. our
/// `viewers-0`, `viewers-1` → `viewers`, trailing digits and dashes trimmed).
pub fn cpu_by_thread_name(pid: u32) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        let Some(cpu) = parse_stat_cpu(&stat) else {
            continue;
        };
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let name = name
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
            .to_string();
        *out.entry(name).or_insert(0.0) += cpu;
    }
    out
}

/// The single process (not us) whose command line contains `needle`.
pub fn find_pid(needle: &str) -> Result<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .context("reading /proc")?
        .flatten()
    {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline"))
        else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    match found.as_slice() {
        [(pid, _)] => Ok(*pid),
        [] => bail!("no process has {needle:?} in its command line"),
        many => bail!(
            "{} processes match {needle:?}; pass --server-pid: {}",
            many.len(),
            many.iter()
                .map(|(p, c)| format!("{p} ({})", c.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// UDP datagrams the kernel dropped because a socket's receive buffer was
/// full (`RcvbufErrors` of `/proc/net/snmp`): system-wide, so on a machine
/// running only the server and this tool it is their loss.
pub fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    parse_rcvbuf_errors(&snmp)
}

fn parse_rcvbuf_errors(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names = udp.next()?.split_whitespace();
    let values = udp.next()?.split_whitespace();
    names
        .zip(values)
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
}

/// Datagrams dropped on the receive buffers of the UDP sockets a process
/// holds (the `drops` column of `/proc/net/udp` for the inodes in its fds):
/// tells whether the server or the load tool was too slow to read.
pub fn udp_socket_drops(pid: u32) -> Option<u64> {
    let mut inodes = std::collections::HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            if let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
            {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut drops = 0;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        drops += sum_drops(&text, &inodes);
    }
    Some(drops)
}

fn sum_drops(table: &str, inodes: &std::collections::HashSet<String>) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            (inodes.contains(*f.get(9)?)).then(|| f.last()?.parse::<u64>().ok())?
        })
        .sum()
}

/// A parsed `/metrics` page: series (name plus labels, as written) → value.
#[derive(Debug, Default, Clone)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        Metrics(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    Some((series.trim().to_string(), value.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    pub fn get(&self, series: &str) -> Option<f64> {
        self.0.get(series).copied()
    }

    /// Counter increase from `earlier` (0 for a series absent then).
    pub fn delta(&self, earlier: &Metrics, series: &str) -> Option<f64> {
        Some(self.get(series)? - earlier.get(series).unwrap_or(0.0))
    }

    /// Quantiles of what histogram `name` observed since `earlier`, in the
    /// histogram's unit, interpolated linearly inside a bucket (as
    /// Prometheus' `histogram_quantile` does). `None` without observations.
    pub fn histogram_since(&self, earlier: &Metrics, name: &str) -> Option<HistogramDelta> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(series, value)| {
                let le = series.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, value - earlier.get(series).unwrap_or(0.0)))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let count = buckets.last()?.1;
        if count <= 0.0 {
            return None;
        }
        let sum = self.delta(earlier, &format!("{name}_sum"))?;
        let quantile = |q: f64| {
            let rank = q * count;
            let mut below = (0.0, 0.0);
            for &(le, cum) in &buckets {
                if cum >= rank {
                    if le.is_infinite() {
                        return below.0;
                    }
                    let share = if cum > below.1 {
                        (rank - below.1) / (cum - below.1)
                    } else {
                        1.0
                    };
                    return below.0 + (le - below.0) * share;
                }
                below = (le, cum);
            }
            below.0
        };
        Some(HistogramDelta {
            count,
            mean: sum / count,
            p50: quantile(0.50),
            p95: quantile(0.95),
            p99: quantile(0.99),
        })
    }
}

/// Summary of a Prometheus histogram's observations over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistogramDelta {
    pub count: f64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

pub async fn fetch_metrics(http: &reqwest::Client, base: &str) -> Result<Metrics> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .context("GET /metrics")?
        .error_for_status()
        .context("GET /metrics")?
        .text()
        .await
        .context("reading /metrics")?;
    Ok(Metrics::parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_counts_fields_after_the_command_name() {
        let stat = "4242 (relay cast) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 \
                    100 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_cpu(stat), Some(3.0));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn metrics_parse_labelled_and_plain_series() {
        let m = Metrics::parse(
            "# HELP x y\n# TYPE relaycast_udp_packets_out_total counter\n\
             relaycast_udp_packets_out_total 1234\n\
             relaycast_drops_total{reason=\"queue_full\"} 5\n",
        );
        assert_eq!(m.get("relaycast_udp_packets_out_total"), Some(1234.0));
        assert_eq!(
            m.get("relaycast_drops_total{reason=\"queue_full\"}"),
            Some(5.0)
        );
        let later = Metrics::parse("relaycast_udp_packets_out_total 2000\n");
        assert_eq!(
            later.delta(&m, "relaycast_udp_packets_out_total"),
            Some(766.0)
        );
    }

    #[test]
    fn histogram_quantiles_interpolate_inside_buckets_over_the_window() {
        let earlier = Metrics::parse(
            "h_bucket{le=\"0.001\"} 10\nh_bucket{le=\"0.002\"} 10\n\
             h_bucket{le=\"0.005\"} 10\nh_bucket{le=\"+Inf\"} 10\nh_sum 0.005\nh_count 10\n",
        );
        // 100 more: 50 at or under 1 ms, 40 in (1, 2] ms, 10 in (2, 5] ms.
        let later = Metrics::parse(
            "h_bucket{le=\"0.001\"} 60\nh_bucket{le=\"0.002\"} 100\n\
             h_bucket{le=\"0.005\"} 110\nh_bucket{le=\"+Inf\"} 110\nh_sum 0.155\nh_count 110\n",
        );
        let h = later.histogram_since(&earlier, "h").expect("observations");
        assert_eq!(h.count, 100.0);
        assert!((h.mean - 0.0015).abs() < 1e-12, "{h:?}");
        assert!((h.p50 - 0.001).abs() < 1e-12, "{h:?}");
        assert!((h.p95 - 0.0035).abs() < 1e-12, "{h:?}");
        assert!((h.p99 - 0.0047).abs() < 1e-12, "{h:?}");
        assert_eq!(later.histogram_since(&later, "h"), None, "nothing new");
        assert_eq!(later.histogram_since(&earlier, "absent"), None);
    }

    #[test]
    fn rcvbuf_errors_come_from_the_udp_lines() {
        let snmp = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    Udp: 10 0 3 12 3 0\n\
                    UdpLite: InDatagrams RcvbufErrors\nUdpLite: 0 9\n";
        assert_eq!(parse_rcvbuf_errors(snmp), Some(3));
        assert_eq!(parse_rcvbuf_errors(""), None);
    }

    #[test]
    fn socket_drops_are_summed_for_the_given_inodes() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            1: 0100007F:A1B2 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 111 2 0000000000000000 5\n\
            2: 0100007F:A1B3 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 222 2 0000000000000000 7\n";
        let inodes = ["111".to_string()].into_iter().collect();
        assert_eq!(sum_drops(table, &inodes), 5);
    }

    #[test]
    fn our_own_process_is_readable() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_ok());
        assert!(rss_kib(pid).is_ok_and(|kib| kib > 0));
        assert!(!cpu_by_thread_name(pid).is_empty());
    }
}

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

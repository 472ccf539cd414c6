//! The `process_*` series every Prometheus client library exposes (CPU time, memory, file
//! descriptors, start time), read from `/proc/self` at each scrape — prometheus-client has no
//! process collector of its own. Names, types and help follow the Go client's, so standard
//! process dashboards and alerts work unchanged. Off Linux, or where a file cannot be read, the
//! series it would give are left out of the scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::fmt;

/// What `/proc/self` says about this process; `None` for what could not be read.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory size, bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors (`None` too when unlimited).
    pub max_fds: Option<u64>,
    /// When the process started, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads the running process's figures.
    pub fn read() -> ProcessStats {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let mut s = ProcessStats::default();
        if let (Some(stat), Some(clock)) = (read("/proc/self/stat"), sysconf(Sysconf::ClockTicks)) {
            let boot = read("/proc/stat").and_then(|t| boot_time(&t));
            if let Some(f) = stat_fields(&stat) {
                let tick = 1.0 / clock as f64;
                s.cpu_seconds = Some((f.utime + f.stime) as f64 * tick);
                s.virtual_memory_bytes = Some(f.vsize);
                s.resident_memory_bytes = sysconf(Sysconf::PageSize).map(|p| f.rss_pages * p);
                s.start_time_seconds = boot.map(|b| b as f64 + f.start_ticks as f64 * tick);
            }
        }
        s.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
        s.max_fds = read("/proc/self/limits").and_then(|t| max_open_files(&t));
        s
    }
}

/// The fields of `/proc/self/stat` used here (proc(5)).
struct StatFields {
    utime: u64,
    stime: u64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

/// Parses `/proc/[pid]/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn stat_fields(stat: &str) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest's first field is field 3 (state): field n is rest's (n - 3)th.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(StatFields { utime: n(14)?, stime: n(15)?, start_ticks: n(22)?, vsize: n(23)?, rss_pages: n(24)? })
}

/// `btime` of `/proc/stat`: boot time, seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

/// The soft limit of `Max open files` in `/proc/[pid]/limits` (`None` when unlimited).
fn max_open_files(limits: &str) -> Option<u64> {
    limits.lines().find_map(|l| l.strip_prefix("Max open files"))?.split_whitespace().next()?.parse().ok()
}

enum Sysconf {
    ClockTicks,
    PageSize,
}

fn sysconf(what: Sysconf) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let name = match what {
            Sysconf::ClockTicks => libc::_SC_CLK_TCK,
            Sysconf::PageSize => libc::_SC_PAGESIZE,
        };
        // SAFETY: sysconf only reads a system constant.
        let v = unsafe { libc::sysconf(name) };
        u64::try_from(v).ok().filter(|v| *v > 0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = what;
        None
    }
}

/// Encodes [`ProcessStats::read`] at each scrape.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let s = ProcessStats::read();
        if let Some(v) = s.cpu_seconds {
            // prometheus-client adds `_total` to a counter's name.
            encoder
                .encode_descriptor(
                    "process_cpu_seconds",
                    "Total user and system CPU time spent in seconds.",
                    None,
                    MetricType::Counter,
                )?
                .encode_counter::<NoLabelSet, f64, f64>(&v, None)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                s.resident_memory_bytes.map(|v| v as f64),
            ),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes.", s.virtual_memory_bytes.map(|v| v as f64)),
            ("process_open_fds", "Number of open file descriptors.", s.open_fds.map(|v| v as f64)),
            ("process_max_fds", "Maximum number of open file descriptors.", s.max_fds.map(|v| v as f64)),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                s.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                encoder.encode_descriptor(name, help, None, MetricType::Gauge)?.encode_gauge(&v)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_parsed_from_the_last_parenthesis() {
        // A command name with a space and a parenthesis, as proc(5) allows.
        let stat = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 \
                    123456 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        let f = stat_fields(stat).unwrap();
        assert_eq!((f.utime, f.stime, f.start_ticks, f.vsize, f.rss_pages), (250, 50, 123456, 987654321, 2048));
        assert!(stat_fields("4242 (truncated) S 1").is_none());
        assert_eq!(boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"), Some(1_700_000_000));
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(max_open_files(&limits.replace("1024 ", "unlimited ")), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_plausibly() {
        let before = ProcessStats::read();
        // Open 64 files more, and burn a little CPU, to watch the figures follow (other tests
        // of this binary may open and close a few files meanwhile).
        let extra: Vec<_> = (0..64).map(|_| std::fs::File::open("/proc/self/stat").unwrap()).collect();
        let mut x = 0u64;
        let until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        while std::time::Instant::now() < until {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        let after = ProcessStats::read();
        drop(extra);
        std::hint::black_box(x);
        assert!(after.cpu_seconds.unwrap() > before.cpu_seconds.unwrap(), "{before:?} {after:?}");
        assert!(after.open_fds.unwrap() >= before.open_fds.unwrap() + 48, "{before:?} {after:?}");
        assert!(after.open_fds.unwrap() <= after.max_fds.unwrap_or(u64::MAX));
        let rss = after.resident_memory_bytes.unwrap();
        assert!(rss > 1 << 20 && rss < after.virtual_memory_bytes.unwrap(), "{after:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let started = after.start_time_seconds.unwrap();
        assert!(started <= now + 1.0 && started > now - 3600.0, "started {started}, now {now}");
    }
}

//! The server process seen from /proc (proc(5)): resident memory and CPU time, for measuring what
//! idle sessions cost a server whatever it is written in.

use anyhow::{Context, Result};
use std::time::Duration;

/// Clock ticks per second in /proc/PID/stat: USER_HZ, which the kernel ABI fixes at 100.
const USER_HZ: u64 = 100;

/// Resident memory and CPU time of one process at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub rss_bytes: u64,
    pub cpu: Duration,
}

/// Reads `VmRSS` from /proc/PID/status and utime + stime (all threads) from /proc/PID/stat.
pub fn sample(pid: u32) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid}"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid}"))?;
    let ticks = cpu_ticks(&stat).context("malformed /proc/PID/stat")?;
    Ok(Sample {
        rss_bytes: rss_kib(&status).context("no VmRSS in /proc/PID/status")? * 1024,
        cpu: Duration::from_millis(ticks * 1000 / USER_HZ),
    })
}

fn rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime, in ticks. The command name (field 2) may hold spaces and parentheses, so the
/// fields are counted from the last ')'.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14 and stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_cpu_ticks() {
        let status = "Name:\trookery\nVmPeak:\t  9000 kB\nVmRSS:\t   4321 kB\nThreads:\t3\n";
        assert_eq!(rss_kib(status), Some(4321));
        let stat = "1234 (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(cpu_ticks(stat), Some(325));
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
    }
}

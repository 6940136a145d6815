//! Figures of the process read at scrape time: resident memory from `/proc/self/status`, and
//! the container's memory limit from its cgroup (v2 `memory.max`, else v1
//! `memory.limit_in_bytes`). Both are `None` where the files do not exist (not Linux).

use std::fs;

/// cgroup files holding the memory limit, v2 first.
const LIMIT_FILES: [&str; 2] = [
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
];

/// cgroup v1 reports "no limit" as a huge number (the page-aligned `i64::MAX`); anything this
/// large is no limit.
const UNLIMITED_FROM: u64 = 1 << 62;

/// The resident set size of this process in bytes.
pub fn resident_memory_bytes() -> Option<u64> {
    parse_vm_rss(&fs::read_to_string("/proc/self/status").ok()?)
}

/// The memory limit of the container this process runs in, in bytes; `None` when unlimited.
pub fn memory_limit_bytes() -> Option<u64> {
    LIMIT_FILES
        .iter()
        .find_map(|path| fs::read_to_string(path).ok())
        .and_then(|text| parse_limit(&text))
}

/// `VmRSS:    12345 kB` from the text of `/proc/<pid>/status`.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib = line.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
    kib.checked_mul(1024)
}

/// A cgroup memory limit: a number of bytes, or `max` (v2) / a huge number (v1) for none.
fn parse_limit(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|&bytes| bytes > 0 && bytes < UNLIMITED_FROM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kibibytes() {
        let status =
            "Name:\timagepipeline-op\nVmPeak:\t  90000 kB\nVmRSS:\t   41236 kB\nThreads:\t5\n";
        assert_eq!(parse_vm_rss(status), Some(41236 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t lots kB\n"), None);
    }

    #[test]
    fn cgroup_limits_distinguish_a_limit_from_none() {
        assert_eq!(parse_limit("268435456\n"), Some(256 << 20));
        assert_eq!(parse_limit("max\n"), None, "cgroup v2 without a limit");
        assert_eq!(
            parse_limit("9223372036854771712\n"),
            None,
            "cgroup v1 without a limit"
        );
        assert_eq!(parse_limit(""), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_resident_size() {
        let rss = resident_memory_bytes().expect("/proc/self/status has VmRSS");
        assert!(rss > 1 << 20, "{rss}");
    }
}

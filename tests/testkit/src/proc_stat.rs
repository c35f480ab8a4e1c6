//! What /proc says of a process: CPU time and memory, for tests and the benchmark.

/// CPU seconds (user + system) process `pid` has used, from /proc/PID/stat;
/// None when the process is gone or the line is not understood.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (in parentheses, which may hold spaces):
    // utime and stime are the 14th and 15th fields of the line.
    let after_name = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ: 100 on Linux (sysconf(_SC_CLK_TCK)).
    Some(ticks / 100.0)
}

/// A kB field of /proc/PID/status (`field` with its colon, e.g. "VmRSS:").
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_cpu_and_has_memory() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_some_and(|s| s >= 0.0));
        assert!(status_kib(pid, "VmRSS:").is_some_and(|kib| kib > 0));
        assert_eq!(status_kib(pid, "NoSuchField:"), None);
        assert_eq!(cpu_seconds(u32::MAX), None);
    }
}

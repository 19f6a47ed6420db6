//! CPU and memory of server processes, read from /proc, for side-by-side comparisons.

/// One watched process (its children included, e.g. nginx workers).
pub struct Watched {
    /// The process id given on the command line.
    pub pid: u32,
    last_ticks: Option<u64>,
}

/// Clock ticks per second of /proc/*/stat (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

impl Watched {
    /// Starts watching `pid`.
    pub fn new(pid: u32) -> Watched {
        Watched { pid, last_ticks: None }
    }

    /// CPU use since the previous call in percent of one core, and resident memory in bytes.
    pub fn sample(&mut self, interval_secs: f64) -> (Option<f64>, Option<u64>) {
        let pids = with_children(self.pid);
        let ticks: u64 = pids.iter().filter_map(|p| cpu_ticks(*p)).sum();
        let rss: u64 = pids.iter().filter_map(|p| rss_bytes(*p)).sum();
        let cpu =
            self.last_ticks.map(|last| (ticks.saturating_sub(last)) as f64 / TICKS_PER_SEC / interval_secs * 100.0);
        self.last_ticks = Some(ticks);
        (cpu, (rss > 0).then_some(rss))
    }
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    Some(statm.split_whitespace().nth(1)?.parse::<u64>().ok()? * 4096)
}

/// `pid` and its direct children (nginx master + workers).
fn with_children(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    out.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
    out
}

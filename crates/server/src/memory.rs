//! Process figures for `INFO memory` and `INFO cpu`: jemalloc's statistics (the binary installs
//! jemalloc as the global allocator), RSS from /proc, CPU times from getrusage.

use std::sync::atomic::{AtomicU64, Ordering};

/// Memory figures in bytes.
pub struct MemoryStats {
    pub allocated: u64,
    pub active: u64,
    pub resident: u64,
    pub rss: u64,
    pub peak: u64,
    pub startup: u64,
    pub total_system: u64,
}

static PEAK: AtomicU64 = AtomicU64::new(0);
static STARTUP: AtomicU64 = AtomicU64::new(0);

/// Bytes allocated through jemalloc right now.
pub fn allocated() -> u64 {
    let _ = tikv_jemalloc_ctl::epoch::advance();
    tikv_jemalloc_ctl::stats::allocated::read().unwrap_or(0) as u64
}

/// Turns jemalloc's background purging thread on or off (Redis's `jemalloc-bg-thread`, on by
/// default): with it, pages freed after a burst (a large pipeline's buffers) go back to the
/// system within jemalloc's decay time even while the server is idle.
pub fn set_background_thread(on: bool) {
    let _ = tikv_jemalloc_ctl::background_thread::write(on);
}

/// Updates `used_memory_peak` with the memory in use now.
pub fn note_peak() {
    PEAK.fetch_max(allocated(), Ordering::Relaxed);
}

/// Records the memory in use once the server is set up (`used_memory_startup`).
pub fn mark_startup() {
    STARTUP.store(allocated(), Ordering::Relaxed);
}

/// Current figures; also updates the peak.
pub fn stats() -> MemoryStats {
    let allocated = allocated();
    let active = tikv_jemalloc_ctl::stats::active::read().unwrap_or(0) as u64;
    let resident = tikv_jemalloc_ctl::stats::resident::read().unwrap_or(0) as u64;
    let peak = PEAK.fetch_max(allocated, Ordering::Relaxed).max(allocated);
    MemoryStats {
        allocated,
        active,
        resident,
        rss: rss(),
        peak,
        startup: STARTUP.load(Ordering::Relaxed),
        total_system: total_system(),
    }
}

/// Resident set size from /proc/self/statm.
pub fn rss() -> u64 {
    let page = 4096;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * page)
}

fn total_system() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .map_or(0, |kb| kb * 1024)
}

/// User and system CPU seconds of this process, from /proc/self/stat (clock ticks of 1/100 s).
pub fn cpu_times() -> (f64, f64) {
    stat_cpu_times("/proc/self/stat")
}

/// User and system CPU seconds of the main thread (the event loop's), whose thread id is the
/// process id.
pub fn main_thread_cpu_times() -> (f64, f64) {
    stat_cpu_times(&format!("/proc/self/task/{}/stat", std::process::id()))
}

fn stat_cpu_times(path: &str) -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return (0.0, 0.0);
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return (0.0, 0.0);
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (ticks(11), ticks(12))
}

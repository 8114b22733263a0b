//! Server statistics: `INFO stats` counters, per-command and per-error counts, the slow log and
//! the latency monitor.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// Server-wide counters, named after their `INFO` fields.
#[derive(Debug, Default)]
pub struct Stats {
    pub total_connections_received: u64,
    pub total_commands_processed: u64,
    pub rejected_connections: u64,
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub evicted_keys: u64,
    pub total_error_replies: u64,
    pub unexpected_error_replies: u64,
    /// Read events handled (`total_reads_processed`).
    pub total_reads_processed: u64,
    /// Write calls made (`total_writes_processed`).
    pub total_writes_processed: u64,
    pub errorstats: BTreeMap<String, u64>,
    ops_samples: [u64; 16],
    in_samples: [u64; 16],
    out_samples: [u64; 16],
    sample_idx: usize,
    last_sample: Option<(Instant, u64, u64, u64)>,
}

/// Errorstats keep at most this many distinct error codes, as Redis does.
const MAX_ERROR_CODES: usize = 128;

impl Stats {
    /// Counts an error reply under its code (`ERR`, `WRONGTYPE`, ...).
    pub fn count_error(&mut self, code: &str) {
        if let Some(n) = self.errorstats.get_mut(code) {
            *n += 1;
        } else if self.errorstats.len() < MAX_ERROR_CODES {
            self.errorstats.insert(code.to_string(), 1);
        }
    }

    /// Takes an instantaneous sample (called from the cron), as Redis's `trackInstantaneousMetric`.
    pub fn sample_ops(&mut self) {
        let now = Instant::now();
        let cur = (
            self.total_commands_processed,
            self.net_input_bytes,
            self.net_output_bytes,
        );
        if let Some((t, ops, inb, outb)) = self.last_sample {
            let ms = now.duration_since(t).as_millis().max(1) as u64;
            if ms < 100 {
                return;
            }
            let i = self.sample_idx % 16;
            self.ops_samples[i] = (cur.0 - ops) * 1000 / ms;
            self.in_samples[i] = (cur.1 - inb) * 1000 / ms;
            self.out_samples[i] = (cur.2 - outb) * 1000 / ms;
            self.sample_idx += 1;
        }
        self.last_sample = Some((now, cur.0, cur.1, cur.2));
    }

    fn avg(samples: &[u64; 16]) -> u64 {
        samples.iter().sum::<u64>() / 16
    }

    /// `instantaneous_ops_per_sec`.
    pub fn instantaneous_ops(&self) -> u64 {
        Self::avg(&self.ops_samples)
    }

    /// `instantaneous_input_kbps` and `instantaneous_output_kbps`.
    pub fn instantaneous_kbps(&self) -> (f64, f64) {
        (
            Self::avg(&self.in_samples) as f64 / 1024.0,
            Self::avg(&self.out_samples) as f64 / 1024.0,
        )
    }

    /// `CONFIG RESETSTAT`.
    pub fn reset(&mut self) {
        *self = Stats::default();
    }
}

/// Per-command counters (`INFO commandstats`).
#[derive(Clone, Copy, Debug, Default)]
pub struct CommandStats {
    pub calls: u64,
    pub usec: u64,
    pub rejected_calls: u64,
    pub failed_calls: u64,
}

/// One slow log entry.
#[derive(Clone, Debug)]
pub struct SlowLogEntry {
    pub id: u64,
    pub time: i64,
    pub duration_us: u64,
    pub args: Vec<Vec<u8>>,
    pub peer: String,
    pub name: Vec<u8>,
}

/// The slow log (`SLOWLOG`), newest first.
#[derive(Debug, Default)]
pub struct SlowLog {
    pub entries: VecDeque<SlowLogEntry>,
    pub next_id: u64,
}

/// Redis keeps at most this many arguments per entry, each up to this many bytes.
const SLOWLOG_MAX_ARGC: usize = 32;
const SLOWLOG_MAX_ARGLEN: usize = 128;

impl SlowLog {
    /// Records a command, trimming arguments as Redis does.
    pub fn push(
        &mut self,
        args: &tessera_protocol::Args<'_>,
        duration_us: u64,
        peer: String,
        name: Vec<u8>,
        max_len: usize,
    ) {
        let argc = args.len();
        let kept = argc.min(SLOWLOG_MAX_ARGC);
        let mut out = Vec::with_capacity(kept);
        for (i, a) in args.iter().take(kept).enumerate() {
            if kept != argc && i == kept - 1 {
                out.push(format!("... ({} more arguments)", argc - kept + 1).into_bytes());
                break;
            }
            if a.len() > SLOWLOG_MAX_ARGLEN {
                let mut t = a[..SLOWLOG_MAX_ARGLEN].to_vec();
                t.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - SLOWLOG_MAX_ARGLEN).as_bytes(),
                );
                out.push(t);
            } else {
                out.push(a.to_vec());
            }
        }
        self.entries.push_front(SlowLogEntry {
            id: self.next_id,
            time: crate::server::unix_ms() / 1000,
            duration_us,
            args: out,
            peer,
            name,
        });
        self.next_id += 1;
        self.entries.truncate(max_len);
    }
}

/// One latency sample.
#[derive(Clone, Copy, Debug)]
pub struct LatencySample {
    pub time: i64,
    pub latency_ms: u64,
}

/// One event's history in the latency monitor.
#[derive(Clone, Debug, Default)]
pub struct LatencyEvent {
    pub samples: VecDeque<LatencySample>,
    pub max: u64,
}

/// The latency monitor (`LATENCY`): per event, up to 160 samples, one per second at most.
#[derive(Debug, Default)]
pub struct LatencyMonitor {
    pub events: BTreeMap<&'static str, LatencyEvent>,
}

impl LatencyMonitor {
    /// Records `ms` for `event` if the threshold (ms, 0 = disabled) is reached.
    pub fn record(&mut self, event: &'static str, ms: u64, threshold: u64) {
        if threshold == 0 || ms < threshold {
            return;
        }
        let now = crate::server::unix_ms() / 1000;
        let e = self.events.entry(event).or_default();
        e.max = e.max.max(ms);
        match e.samples.back_mut() {
            Some(last) if last.time == now => last.latency_ms = last.latency_ms.max(ms),
            _ => {
                e.samples.push_back(LatencySample {
                    time: now,
                    latency_ms: ms,
                });
                if e.samples.len() > 160 {
                    e.samples.pop_front();
                }
            }
        }
    }
}

/// `LATENCY GRAPH`: the event's samples as Redis's filled sparkline (latency.c and
/// sparkline.c): a header, 80 dashes, then 4 rows of `_o#|` per 80 samples with the age of
/// each sample written vertically below it.
pub fn latency_graph(name: &str, e: &LatencyEvent, now: i64) -> String {
    const COLUMNS: usize = 80;
    const ROWS: usize = 4;
    let samples: Vec<(u64, String)> = e
        .samples
        .iter()
        .map(|s| {
            let elapsed = now - s.time;
            let label = match elapsed {
                ..60 => format!("{elapsed}s"),
                60..3600 => format!("{}m", elapsed / 60),
                3600..86400 => format!("{}h", elapsed / 3600),
                _ => format!("{}d", elapsed / 86400),
            };
            (s.latency_ms, label)
        })
        .collect();
    let min = samples.iter().map(|s| s.0).min().unwrap_or(0);
    let max = samples.iter().map(|s| s.0).max().unwrap_or(0);
    let mut out = format!(
        "{name} - high {max} ms, low {min} ms (all time high {} ms)\n{}\n",
        e.max,
        "-".repeat(COLUMNS)
    );
    for (n, chunk) in samples.chunks(COLUMNS).enumerate() {
        if n > 0 {
            out.push('\n');
        }
        sparkline_range(&mut out, chunk, min, max, ROWS);
    }
    out
}

/// One block of Redis's `sparklineRenderRange` with `SPARKLINE_FILL`.
fn sparkline_range(out: &mut String, samples: &[(u64, String)], min: u64, max: u64, rows: usize) {
    const FILL: [char; 3] = ['_', 'o', '#'];
    const LABEL_MARGIN_TOP: usize = 1;
    let steps = (FILL.len() * rows) as i64;
    let relmax = if max == min { 1.0 } else { (max - min) as f64 };
    let mut row = 0;
    loop {
        let mut more = false;
        let mut chars = vec![' '; samples.len()];
        for (j, (value, label)) in samples.iter().enumerate() {
            let relval = (value - min) as f64;
            // As C: (int)(relval * steps) / relmax, truncated.
            let step = (((relval * steps as f64) as i64) as f64 / relmax) as i64;
            let step = step.clamp(0, steps - 1);
            if row < rows {
                more = true;
                let idx = step - ((rows - row - 1) * FILL.len()) as i64;
                if (0..FILL.len() as i64).contains(&idx) {
                    chars[j] = FILL[idx as usize];
                } else if idx >= FILL.len() as i64 {
                    chars[j] = '|';
                }
            } else {
                if row - rows < LABEL_MARGIN_TOP {
                    more = true;
                    break;
                }
                let at = row - rows - LABEL_MARGIN_TOP;
                if let Some(c) = label.chars().nth(at) {
                    more = true;
                    chars[j] = c;
                }
            }
        }
        if !more {
            break;
        }
        row += 1;
        out.extend(chars);
        out.push('\n');
    }
}

/// A command's latency histogram (Redis 7's `latency-tracking`): nanoseconds from 1 ns to 1 s
/// with 2 significant digits, as Redis's hdr_histogram.
pub struct LatencyHistogram(hdrhistogram::Histogram<u64>);

impl LatencyHistogram {
    const MAX_NS: u64 = 1_000_000_000;

    /// An empty histogram.
    pub fn new() -> Self {
        LatencyHistogram(
            hdrhistogram::Histogram::new_with_bounds(1, Self::MAX_NS, 2)
                .expect("constant bounds are valid"),
        )
    }

    /// Records one call of `duration_us` microseconds (clamped to 1 ns .. 1 s, as Redis).
    #[inline]
    pub fn record(&mut self, duration_us: u64) {
        self.0
            .saturating_record(duration_us.saturating_mul(1000).clamp(1, Self::MAX_NS));
    }

    /// Number of calls recorded.
    pub fn calls(&self) -> u64 {
        self.0.len()
    }

    /// The latency at `percentile` (0..100), in microseconds.
    pub fn percentile_us(&self, percentile: f64) -> f64 {
        self.0.value_at_percentile(percentile) as f64 / 1000.0
    }

    /// The cumulative distribution `LATENCY HISTOGRAM` replies: for power-of-two reporting
    /// levels from 1024 ns, the highest value equivalent to the level (in µs) and the number of
    /// calls up to it, only where the count grew (Redis's `fillCommandCDF`).
    pub fn cdf(&self) -> Vec<(u64, u64)> {
        let total = self.0.len();
        let mut out = Vec::new();
        let mut level: u64 = 1024;
        let mut previous = 0;
        while previous < total && level <= Self::MAX_NS * 2 {
            let upper = self.0.highest_equivalent(level);
            let cumulative = self.0.count_between(0, level);
            if cumulative > previous {
                out.push((upper / 1000, cumulative));
            }
            previous = cumulative;
            level *= 2;
        }
        out
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LatencyHistogram({} calls)", self.calls())
    }
}

#[cfg(test)]
mod tests {
    use super::LatencyHistogram;

    #[test]
    fn cdf_reports_redis_buckets() {
        let mut h = LatencyHistogram::new();
        for us in [0, 0, 0, 5, 5, 40] {
            h.record(us);
        }
        // Levels 1024, 8192 and 65536 ns, reported at their highest equivalent value in µs.
        assert_eq!(h.cdf(), [(1, 3), (8, 5), (66, 6)]);
        assert_eq!(h.calls(), 6);
        assert!((h.percentile_us(50.0) - 0.001).abs() < 1e-9);
    }
}

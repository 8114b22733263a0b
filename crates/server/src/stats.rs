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

//! The hub's counters and their Prometheus text exposition (`/metrics`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::ErrorCode;

/// Upper bounds of the latency histograms' buckets, in seconds.
const BOUNDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A latency histogram for Prometheus (cumulative buckets, sum and count), lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is beyond every bound.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BOUNDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BOUNDS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BOUNDS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[BOUNDS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Counters for `/metrics` and the benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub updates_committed: AtomicU64,
    pub commit_batches: AtomicU64,
    pub messages_in: AtomicU64,
    /// Typed errors sent to clients, by code (indexed as [`ErrorCode::ALL`]).
    pub errors_sent: [AtomicU64; ErrorCode::ALL.len()],
    pub bus_dropped: AtomicU64,
    /// Publishing rounds the bus refused or did not answer (Redis down): their edits reach the
    /// other hubs only through a resync.
    pub bus_publish_failures: AtomicU64,
    pub resyncs: AtomicU64,
    /// Activity events stored in the interview record, and those lost (the database refused them,
    /// or the queue was full).
    pub events_recorded: AtomicU64,
    pub events_failed: AtomicU64,
    /// From a write's being queued (the edit integrated) to its commit: the edit → commit latency
    /// a participant's ack waits for.
    pub commit_latency: Histogram,
    /// From an edit taken by the interview to its broadcast to the other local participants being
    /// queued (edits staged over the integration budget are not counted): the edit → delivery
    /// latency, on this hub.
    pub delivery_latency: Histogram,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a refusal sent to a client.
    pub fn error_sent(&self, code: ErrorCode) {
        Self::add(&self.errors_sent[code as usize], 1);
    }

    /// Prometheus text, with the gauges of loaded interviews and connected participants, and
    /// whether the database takes the hub's commits.
    pub fn render(&self, interviews: usize, users: usize, database_up: bool) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        metric(
            "duet_hub_active_interviews",
            "Interviews loaded on this hub.",
            "gauge",
            interviews as u64,
        );
        metric(
            "duet_hub_connected_users",
            "Participants connected to this hub.",
            "gauge",
            users as u64,
        );
        metric(
            "duet_hub_connections_total",
            "Socket.IO connections accepted.",
            "counter",
            get(&self.connections),
        );
        metric(
            "duet_hub_messages_total",
            "Collaboration messages received.",
            "counter",
            get(&self.messages_in),
        );
        metric(
            "duet_hub_updates_committed_total",
            "Document updates committed.",
            "counter",
            get(&self.updates_committed),
        );
        metric(
            "duet_hub_commit_batches_total",
            "Group-commit transactions.",
            "counter",
            get(&self.commit_batches),
        );
        metric(
            "duet_hub_bus_dropped_total",
            "Bus messages dropped (queue full).",
            "counter",
            get(&self.bus_dropped),
        );
        metric(
            "duet_hub_bus_publish_failures_total",
            "Bus publishing rounds that failed (Redis unreachable or refusing).",
            "counter",
            get(&self.bus_publish_failures),
        );
        metric(
            "duet_hub_resyncs_total",
            "Interview resyncs after missed bus messages.",
            "counter",
            get(&self.resyncs),
        );
        metric(
            "duet_hub_events_recorded_total",
            "Activity events (joins, leaves, languages, pastes, blur/focus) stored in the record.",
            "counter",
            get(&self.events_recorded),
        );
        metric(
            "duet_hub_events_failed_total",
            "Activity events not stored (database errors, queue full).",
            "counter",
            get(&self.events_failed),
        );
        metric(
            "duet_hub_database_up",
            "1 while the database takes the hub's commits, 0 while they fail (edits wait, unacked).",
            "gauge",
            u64::from(database_up),
        );
        let _ = writeln!(
            out,
            "# HELP duet_hub_errors_total Typed errors sent to clients, by code.\n# TYPE duet_hub_errors_total counter"
        );
        for code in ErrorCode::ALL {
            let _ = writeln!(
                out,
                "duet_hub_errors_total{{code=\"{}\"}} {}",
                code.as_str(),
                get(&self.errors_sent[code as usize])
            );
        }
        self.commit_latency.render(
            &mut out,
            "duet_hub_edit_commit_seconds",
            "From an edit integrated to its commit (what its ack waits for).",
        );
        self.delivery_latency.render(
            &mut out,
            "duet_hub_edit_delivery_seconds",
            "From an edit received to its broadcast to the other participants on this hub being queued.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_by_code_and_the_database_state_is_a_gauge() {
        let stats = Stats::default();
        stats.error_sent(ErrorCode::RateLimited);
        stats.error_sent(ErrorCode::RateLimited);
        stats.error_sent(ErrorCode::Removed);
        let out = stats.render(3, 4, false);
        assert!(
            out.contains("duet_hub_errors_total{code=\"rate_limited\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("duet_hub_errors_total{code=\"removed\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("duet_hub_errors_total{code=\"not_joined\"} 0\n"),
            "{out}"
        );
        assert_eq!(
            out.matches("# TYPE duet_hub_errors_total counter").count(),
            1
        );
        assert!(out.contains("duet_hub_database_up 0\n"), "{out}");
        assert!(stats
            .render(0, 0, true)
            .contains("duet_hub_database_up 1\n"));
        // Every code is a series: indexes and `ALL` agree.
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(*code as usize, i);
        }
    }

    #[test]
    fn the_histogram_renders_cumulative_buckets_sum_and_count() {
        let h = Histogram::default();
        for ms in [0, 3, 3, 40, 7000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "help");
        assert!(out.contains("# TYPE x_seconds histogram"));
        assert!(out.contains("x_seconds_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.05\"} 4\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"5\"} 4\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("x_seconds_sum 7.046\n"), "{out}");
        assert!(out.contains("x_seconds_count 5\n"), "{out}");
    }
}

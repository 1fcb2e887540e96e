//! The hub's counters and their Prometheus text exposition (`/metrics`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for `/metrics` and the benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub updates_committed: AtomicU64,
    pub commit_batches: AtomicU64,
    pub messages_in: AtomicU64,
    pub errors_sent: AtomicU64,
    pub bus_dropped: AtomicU64,
    pub resyncs: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Prometheus text, with the gauges of loaded interviews and connected participants.
    pub fn render(&self, interviews: usize, users: usize) -> String {
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
            "duet_hub_errors_total",
            "Typed errors sent to clients.",
            "counter",
            get(&self.errors_sent),
        );
        metric(
            "duet_hub_bus_dropped_total",
            "Bus messages dropped (queue full).",
            "counter",
            get(&self.bus_dropped),
        );
        metric(
            "duet_hub_resyncs_total",
            "Interview resyncs after missed bus messages.",
            "counter",
            get(&self.resyncs),
        );
        out
    }
}

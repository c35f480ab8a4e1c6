//! How long the Lease, Admin, Fleet and Control calls take here: histograms the auth layer fills.
//!
//! Measured from the call's arrival to its response (for the streams Wait
//! and Watch: to the stream's opening). A call forwarded to the leader is
//! measured on both voters.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::rules::access::Rpc;

/// The label: the call's gRPC path without the package, e.g. `Lease/Acquire`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabel {
    pub call: String,
}

fn histogram() -> Histogram {
    // 0.5 ms .. ~16 s, doubling.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The histograms, shared by the auth layer and the metrics; cheap to clone.
#[derive(Clone)]
pub struct CallLatency {
    seconds: Family<CallLabel, Histogram, fn() -> Histogram>,
}

impl Default for CallLatency {
    fn default() -> Self {
        CallLatency {
            seconds: Family::new_with_constructor(histogram),
        }
    }
}

impl CallLatency {
    /// The label of a Lease, Admin, Fleet or Control call; `None` for raft's calls.
    fn label(rpc: Rpc) -> Option<CallLabel> {
        const MEASURED: [&str; 4] = ["Lease/", "Admin/", "Fleet/", "Control/"];
        let call = rpc
            .path()
            .strip_prefix("/baton.v1.")
            .filter(|call| MEASURED.iter().any(|service| call.starts_with(service)))?;
        Some(CallLabel {
            call: call.to_string(),
        })
    }

    /// Whether `rpc` is measured.
    pub fn measures(rpc: Rpc) -> bool {
        Self::label(rpc).is_some()
    }

    /// Records one `rpc` call that took `took`.
    pub fn observe(&self, rpc: Rpc, took: Duration) {
        if let Some(label) = Self::label(rpc) {
            self.seconds
                .get_or_create(&label)
                .observe(took.as_secs_f64());
        }
    }

    /// The family, for the registry.
    pub fn family(&self) -> Family<CallLabel, Histogram, fn() -> Histogram> {
        self.seconds.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_admin_fleet_and_control_calls_are_measured_raft_is_not() {
        assert!(CallLatency::measures(Rpc::Acquire));
        assert!(CallLatency::measures(Rpc::SetMax));
        assert!(CallLatency::measures(Rpc::FleetReport));
        for rpc in [Rpc::Hold, Rpc::Unhold, Rpc::RebootNow, Rpc::HostControl] {
            assert!(CallLatency::measures(rpc), "{rpc:?}");
        }
        assert!(!CallLatency::measures(Rpc::RaftAppendEntries));
        let latency = CallLatency::default();
        latency.observe(Rpc::Acquire, Duration::from_millis(3));
        latency.observe(Rpc::Hold, Duration::from_millis(3));
        latency.observe(Rpc::RaftVote, Duration::from_millis(3));
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register(
            "baton_grpc_call_duration_seconds",
            "Calls",
            latency.family(),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap_or_default();
        assert!(
            text.contains("baton_grpc_call_duration_seconds_count{call=\"Lease/Acquire\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("baton_grpc_call_duration_seconds_count{call=\"Control/Hold\"} 1"),
            "{text}"
        );
        assert!(!text.contains("Raft/"), "{text}");
    }
}

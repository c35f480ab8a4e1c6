//! Loading, stage 2: fragments overlaid in merge order, each value keeping file and span.

use std::ops::Range;

use toml::Spanned;

use super::fragments::{
    Fragment, FragmentCommand, FragmentFreeze, FragmentVoter, FragmentWebhook, FragmentWindow,
};

/// A merged value with the fragment (index into the fragment list) and byte
/// span it came from, so validation can point at the right file and line.
#[derive(Debug)]
pub(super) struct Located<T> {
    pub(super) value: T,
    pub(super) fragment: usize,
    pub(super) span: Range<usize>,
}

impl<T> Located<T> {
    pub(super) fn new(value: Spanned<T>, fragment: usize) -> Located<T> {
        let span = value.span();
        Located {
            value: value.into_inner(),
            fragment,
            span,
        }
    }
}

/// Replaces `slot` with `value` if the later fragment sets it.
pub(super) fn overlay<T>(
    slot: &mut Option<Located<T>>,
    value: Option<Spanned<T>>,
    fragment: usize,
) {
    if let Some(value) = value {
        *slot = Some(Located::new(value, fragment));
    }
}

/// A merged string array whose elements keep their own spans.
pub(super) type LocatedStrings = Located<Vec<Spanned<String>>>;

#[derive(Debug, Default)]
pub(super) struct Inputs {
    pub(super) node: NodeInputs,
    pub(super) cluster: ClusterInputs,
    pub(super) lease: LeaseInputs,
    pub(super) updates: UpdatesInputs,
    pub(super) reboot: RebootInputs,
    pub(super) hooks: HooksInputs,
    pub(super) kubernetes: KubernetesInputs,
    pub(super) tls: TlsInputs,
    pub(super) metrics: MetricsInputs,
    pub(super) fleetlock: FleetLockInputs,
    pub(super) blockers: BlockersInputs,
    pub(super) notify: NotifyInputs,
}

#[derive(Debug, Default)]
pub(super) struct NodeInputs {
    pub(super) name: Option<Located<String>>,
    pub(super) state_dir: Option<Located<String>>,
    pub(super) group: Option<Located<String>>,
}

#[derive(Debug, Default)]
pub(super) struct ClusterInputs {
    /// The `[cluster]` table (header or dotted key) of the last fragment
    /// that has one: where a missing `listen` is reported.
    pub(super) table: Option<Located<()>>,
    pub(super) listen: Option<Located<String>>,
    /// Arrays replace as a whole; entries keep their own spans.
    pub(super) voters: Option<Located<Vec<Spanned<FragmentVoter>>>>,
    pub(super) heartbeat_interval: Option<Located<String>>,
    pub(super) election_timeout: Option<Located<String>>,
    pub(super) snapshot_every: Option<Located<u64>>,
    pub(super) connect_timeout: Option<Located<String>>,
    pub(super) request_timeout: Option<Located<String>>,
}

#[derive(Debug, Default)]
pub(super) struct LeaseInputs {
    pub(super) default_max_holders: Option<Located<u32>>,
    pub(super) waiter_ttl: Option<Located<String>>,
    pub(super) hold_timeout: Option<Located<String>>,
    pub(super) settle_time: Option<Located<String>>,
}

#[derive(Debug, Default)]
pub(super) struct UpdatesInputs {
    pub(super) source: Option<Located<String>>,
    pub(super) check_interval: Option<Located<String>>,
    pub(super) poll_interval: Option<Located<String>>,
    pub(super) report_interval: Option<Located<String>>,
    pub(super) dbus_address: Option<Located<String>>,
    pub(super) os_release: Option<Located<String>>,
    pub(super) reboot_required: Option<Located<String>>,
    pub(super) unattended_upgrade: Option<LocatedStrings>,
    pub(super) apt_conf_dir: Option<Located<String>>,
    pub(super) sentinel_file: Option<Located<String>>,
    pub(super) sentinel_command: Option<LocatedStrings>,
}

#[derive(Debug, Default)]
pub(super) struct RebootInputs {
    pub(super) method: Option<Located<String>>,
    pub(super) command: Option<LocatedStrings>,
    pub(super) time_zone: Option<Located<String>>,
    pub(super) window: Option<Located<Vec<Spanned<FragmentWindow>>>>,
    pub(super) freeze: Option<Located<Vec<Spanned<FragmentFreeze>>>>,
    pub(super) blocker: Option<Located<Vec<Spanned<FragmentCommand>>>>,
    pub(super) blocker_retry: Option<Located<String>>,
    pub(super) boot_id_path: Option<Located<String>>,
}

#[derive(Debug, Default)]
pub(super) struct HooksInputs {
    pub(super) before_reboot: Option<Located<Vec<Spanned<FragmentCommand>>>>,
    pub(super) after_reboot: Option<Located<Vec<Spanned<FragmentCommand>>>>,
}

#[derive(Debug, Default)]
pub(super) struct KubernetesInputs {
    /// Some fragment has a `[kubernetes]` table, even an empty one.
    pub(super) present: bool,
    pub(super) kubeconfig: Option<Located<String>>,
    pub(super) node_name: Option<Located<String>>,
    pub(super) drain_timeout: Option<Located<String>>,
    pub(super) grace_period: Option<Located<String>>,
    pub(super) pod_selector: Option<Located<String>>,
    pub(super) ready_timeout: Option<Located<String>>,
    pub(super) eviction_retry: Option<Located<String>>,
    pub(super) force_after: Option<Located<String>>,
    pub(super) annotate_node: Option<Located<bool>>,
    pub(super) pre_reboot_labels: Option<LocatedStrings>,
    pub(super) post_reboot_labels: Option<LocatedStrings>,
}

#[derive(Debug, Default)]
pub(super) struct BlockersInputs {
    pub(super) pod_selectors: Option<LocatedStrings>,
    /// The `[blockers.prometheus]` table of the last fragment that has one:
    /// where a missing `url` is reported.
    pub(super) prometheus: Option<Located<()>>,
    pub(super) url: Option<Located<String>>,
    pub(super) alert_filter: Option<Located<String>>,
    pub(super) alert_filter_match_only: Option<Located<bool>>,
    pub(super) firing_only: Option<Located<bool>>,
    pub(super) timeout: Option<Located<String>>,
}

#[derive(Debug, Default)]
pub(super) struct NotifyInputs {
    /// Arrays replace as a whole; entries keep their own spans.
    pub(super) webhook: Option<Located<Vec<Spanned<FragmentWebhook>>>>,
}

#[derive(Debug, Default)]
pub(super) struct TlsInputs {
    pub(super) ca: Option<Located<String>>,
    pub(super) cert: Option<Located<String>>,
    pub(super) key: Option<Located<String>>,
    pub(super) insecure: Option<Located<bool>>,
}

#[derive(Debug, Default)]
pub(super) struct MetricsInputs {
    pub(super) listen: Option<Located<String>>,
    pub(super) allow_remote: Option<Located<bool>>,
}

#[derive(Debug, Default)]
pub(super) struct FleetLockInputs {
    pub(super) listen: Option<Located<String>>,
    pub(super) groups: Option<LocatedStrings>,
    pub(super) allow_networks: Option<LocatedStrings>,
    pub(super) poll_ttl: Option<Located<String>>,
}

impl Inputs {
    /// Overlays a later fragment: tables merge key by key, scalars and arrays
    /// replace. Arrays of tables (`[[reboot.window]]`, `[[reboot.blocker]]`,
    /// `[[hooks.before_reboot]]`, `[[hooks.after_reboot]]`) are arrays like
    /// any other: a later fragment that has entries replaces the earlier
    /// fragment's whole array instead of appending to it, so a drop-in can
    /// redefine the windows without repeating or knowing the vendor's, and
    /// `window = []` under `[reboot]` clears them.
    pub(super) fn overlay(&mut self, fragment: Fragment, index: usize) {
        if let Some(node) = fragment.node {
            let n = &mut self.node;
            overlay(&mut n.name, node.name, index);
            overlay(&mut n.state_dir, node.state_dir, index);
            overlay(&mut n.group, node.group, index);
        }
        if let Some(cluster) = fragment.cluster {
            let c = &mut self.cluster;
            let span = cluster.span();
            let cluster = cluster.into_inner();
            c.table = Some(Located {
                value: (),
                fragment: index,
                span,
            });
            overlay(&mut c.listen, cluster.listen, index);
            overlay(&mut c.voters, cluster.voters, index);
            overlay(&mut c.heartbeat_interval, cluster.heartbeat_interval, index);
            overlay(&mut c.election_timeout, cluster.election_timeout, index);
            overlay(&mut c.snapshot_every, cluster.snapshot_every, index);
            overlay(&mut c.connect_timeout, cluster.connect_timeout, index);
            overlay(&mut c.request_timeout, cluster.request_timeout, index);
        }
        if let Some(lease) = fragment.lease {
            let l = &mut self.lease;
            overlay(&mut l.default_max_holders, lease.default_max_holders, index);
            overlay(&mut l.waiter_ttl, lease.waiter_ttl, index);
            overlay(&mut l.hold_timeout, lease.hold_timeout, index);
            overlay(&mut l.settle_time, lease.settle_time, index);
        }
        if let Some(updates) = fragment.updates {
            let u = &mut self.updates;
            overlay(&mut u.source, updates.source, index);
            overlay(&mut u.check_interval, updates.check_interval, index);
            overlay(&mut u.poll_interval, updates.poll_interval, index);
            overlay(&mut u.report_interval, updates.report_interval, index);
            overlay(&mut u.dbus_address, updates.dbus_address, index);
            overlay(&mut u.os_release, updates.os_release, index);
            overlay(&mut u.reboot_required, updates.reboot_required, index);
            overlay(&mut u.unattended_upgrade, updates.unattended_upgrade, index);
            overlay(&mut u.apt_conf_dir, updates.apt_conf_dir, index);
            overlay(&mut u.sentinel_file, updates.sentinel_file, index);
            overlay(&mut u.sentinel_command, updates.sentinel_command, index);
        }
        if let Some(reboot) = fragment.reboot {
            let r = &mut self.reboot;
            overlay(&mut r.method, reboot.method, index);
            overlay(&mut r.command, reboot.command, index);
            overlay(&mut r.time_zone, reboot.time_zone, index);
            overlay(&mut r.window, reboot.window, index);
            overlay(&mut r.freeze, reboot.freeze, index);
            overlay(&mut r.blocker, reboot.blocker, index);
            overlay(&mut r.blocker_retry, reboot.blocker_retry, index);
            overlay(&mut r.boot_id_path, reboot.boot_id_path, index);
        }
        if let Some(hooks) = fragment.hooks {
            let h = &mut self.hooks;
            overlay(&mut h.before_reboot, hooks.before_reboot, index);
            overlay(&mut h.after_reboot, hooks.after_reboot, index);
        }
        if let Some(kubernetes) = fragment.kubernetes {
            let k = &mut self.kubernetes;
            k.present = true;
            overlay(&mut k.kubeconfig, kubernetes.kubeconfig, index);
            overlay(&mut k.node_name, kubernetes.node_name, index);
            overlay(&mut k.drain_timeout, kubernetes.drain_timeout, index);
            overlay(&mut k.grace_period, kubernetes.grace_period, index);
            overlay(&mut k.pod_selector, kubernetes.pod_selector, index);
            overlay(&mut k.ready_timeout, kubernetes.ready_timeout, index);
            overlay(&mut k.eviction_retry, kubernetes.eviction_retry, index);
            overlay(&mut k.force_after, kubernetes.force_after, index);
            overlay(&mut k.annotate_node, kubernetes.annotate_node, index);
            overlay(
                &mut k.pre_reboot_labels,
                kubernetes.pre_reboot_labels,
                index,
            );
            overlay(
                &mut k.post_reboot_labels,
                kubernetes.post_reboot_labels,
                index,
            );
        }
        if let Some(tls) = fragment.tls {
            let t = &mut self.tls;
            overlay(&mut t.ca, tls.ca, index);
            overlay(&mut t.cert, tls.cert, index);
            overlay(&mut t.key, tls.key, index);
            overlay(&mut t.insecure, tls.insecure, index);
        }
        if let Some(metrics) = fragment.metrics {
            let m = &mut self.metrics;
            overlay(&mut m.listen, metrics.listen, index);
            overlay(&mut m.allow_remote, metrics.allow_remote, index);
        }
        if let Some(fleetlock) = fragment.fleetlock {
            let f = &mut self.fleetlock;
            overlay(&mut f.listen, fleetlock.listen, index);
            overlay(&mut f.groups, fleetlock.groups, index);
            overlay(&mut f.allow_networks, fleetlock.allow_networks, index);
            overlay(&mut f.poll_ttl, fleetlock.poll_ttl, index);
        }
        if let Some(blockers) = fragment.blockers {
            let b = &mut self.blockers;
            overlay(&mut b.pod_selectors, blockers.pod_selectors, index);
            if let Some(prometheus) = blockers.prometheus {
                let span = prometheus.span();
                let p = prometheus.into_inner();
                b.prometheus = Some(Located {
                    value: (),
                    fragment: index,
                    span,
                });
                overlay(&mut b.url, p.url, index);
                overlay(&mut b.alert_filter, p.alert_filter, index);
                overlay(
                    &mut b.alert_filter_match_only,
                    p.alert_filter_match_only,
                    index,
                );
                overlay(&mut b.firing_only, p.firing_only, index);
                overlay(&mut b.timeout, p.timeout, index);
            }
        }
        if let Some(notify) = fragment.notify {
            overlay(&mut self.notify.webhook, notify.webhook, index);
        }
    }
}

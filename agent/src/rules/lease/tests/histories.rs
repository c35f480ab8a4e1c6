//! Random command histories for the proptests: the command shapes and how each
//! is built against the state it will be applied to.

use super::super::*;
use proptest::prelude::*;

pub(super) const GROUPS: [&str; 3] = ["alpha", "beta", "gamma"];
pub(super) const HOLDERS: [&str; 6] = ["h0", "h1", "h2", "h3", "h4", "h5"];
pub(super) const REASONS: [&str; 2] = ["kernel", "maintenance"];
pub(super) const DEFAULT_MAX: u32 = 2;

/// A command shape; tokens, sessions and unclaimed grants are resolved against
/// the state when the command is built.
#[derive(Debug, Clone)]
pub(super) enum Op {
    /// `other_machine`: the same holder name from another machine id.
    Acquire {
        g: usize,
        h: usize,
        other_machine: bool,
    },
    /// The holder of an unclaimed grant (picked by `pick`) takes it.
    Claim {
        pick: usize,
    },
    Release {
        g: usize,
        h: usize,
        token: u8,
    },
    Expire {
        timeout: Option<u64>,
    },
    /// Drops the sessions picked by the bits of `mask`, plus `extra`
    /// (group, holder) pairs that may be anything: claimed holders, unknowns.
    DropWaiters {
        mask: u32,
        extra: Vec<(usize, usize)>,
    },
    Pause {
        g: Option<usize>,
        reason: usize,
    },
    Resume {
        g: Option<usize>,
    },
    Force {
        g: usize,
        h: usize,
    },
    SetMax {
        g: usize,
        max: u32,
    },
    Invalid {
        which: u8,
    },
    /// Sets the settle time (0: off).
    Settle {
        ms: u64,
    },
    /// Holds, unholds or asks a reboot of a host.
    Control {
        h: usize,
        which: u8,
    },
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    let g = 0..GROUPS.len();
    let h = 0..HOLDERS.len();
    prop_oneof![
        8 => (g.clone(), h.clone(), proptest::bool::weighted(0.1))
            .prop_map(|(g, h, other_machine)| Op::Acquire { g, h, other_machine }),
        3 => (0usize..32).prop_map(|pick| Op::Claim { pick }),
        4 => (g.clone(), h.clone(), 0u8..3).prop_map(|(g, h, token)| Op::Release { g, h, token }),
        2 => proptest::option::of(0u64..300).prop_map(|timeout| Op::Expire { timeout }),
        3 => (any::<u32>(), proptest::collection::vec((g.clone(), h.clone()), 0..3))
            .prop_map(|(mask, extra)| Op::DropWaiters { mask, extra }),
        1 => (proptest::option::of(g.clone()), 0..REASONS.len())
            .prop_map(|(g, reason)| Op::Pause { g, reason }),
        2 => proptest::option::of(g.clone()).prop_map(|g| Op::Resume { g }),
        1 => (g.clone(), h).prop_map(|(g, h)| Op::Force { g, h }),
        2 => (g, 0u32..5).prop_map(|(g, max)| Op::SetMax { g, max }),
        1 => (0u8..5).prop_map(|which| Op::Invalid { which }),
        1 => prop_oneof![Just(0u64), 1u64..120].prop_map(|ms| Op::Settle { ms }),
        2 => (0..HOLDERS.len(), 0u8..4).prop_map(|(h, which)| Op::Control { h, which }),
    ]
}

pub(super) fn acquire_cmd(
    group: &str,
    holder: &str,
    machine_id: String,
    now: UnixMillis,
) -> Command {
    Command::Acquire {
        group: group.into(),
        holder: holder.into(),
        machine_id,
        now,
        default_max_holders: DEFAULT_MAX,
    }
}

pub(super) fn build(op: &Op, state: &LeaseState, now: UnixMillis) -> Command {
    match op {
        &Op::Acquire {
            g,
            h,
            other_machine,
        } => {
            let machine = if other_machine { "other" } else { "mid" };
            acquire_cmd(GROUPS[g], HOLDERS[h], format!("{machine}-{h}"), now)
        }
        &Op::Claim { pick } => {
            let all = || state.groups.values().flat_map(|g| g.holders.iter());
            let unclaimed: Vec<&Grant> = all().filter(|g| !g.claimed).collect();
            let grants: Vec<&Grant> = all().collect();
            let candidates = if unclaimed.is_empty() {
                grants
            } else {
                unclaimed
            };
            match candidates.get(pick % candidates.len().max(1)) {
                Some(grant) => {
                    acquire_cmd(&grant.group, &grant.holder, grant.machine_id.clone(), now)
                }
                None => {
                    let h = pick % HOLDERS.len();
                    acquire_cmd(
                        GROUPS[pick % GROUPS.len()],
                        HOLDERS[h],
                        format!("mid-{h}"),
                        now,
                    )
                }
            }
        }
        &Op::Release { g, h, token } => {
            let held = state.holder_grant(GROUPS[g], HOLDERS[h]).map(|g| g.token);
            let token = match token {
                0 => None,
                1 => held.or(Some(1)),
                _ => held.map(|t| t + 1).or(Some(0)),
            };
            Command::Release {
                group: GROUPS[g].into(),
                holder: HOLDERS[h].into(),
                token,
                now,
            }
        }
        &Op::Expire { timeout } => Command::Expire {
            now,
            hold_timeout_ms: timeout,
        },
        Op::DropWaiters { mask, extra } => {
            let mut waiters: Vec<WaiterRef> = state
                .sessions()
                .enumerate()
                .filter(|(i, _)| *i < 32 && mask & (1 << i) != 0)
                .map(|(_, w)| w)
                .collect();
            waiters.extend(extra.iter().map(|&(g, h)| WaiterRef {
                group: GROUPS[g].into(),
                holder: HOLDERS[h].into(),
            }));
            Command::DropWaiters { waiters, now }
        }
        &Op::Pause { g, reason } => Command::Pause {
            by: "ops".into(),
            group: g.map(|g| GROUPS[g].into()),
            reason: REASONS[reason].into(),
            now,
            default_max_holders: DEFAULT_MAX,
        },
        &Op::Resume { g } => Command::Resume {
            by: "ops".into(),
            group: g.map(|g| GROUPS[g].into()),
            now,
        },
        &Op::Force { g, h } => Command::ForceRelease {
            by: "ops".into(),
            group: GROUPS[g].into(),
            holder: HOLDERS[h].into(),
            now,
        },
        &Op::SetMax { g, max } => Command::SetMax {
            by: "ops".into(),
            group: GROUPS[g].into(),
            max_holders: max,
            now,
            default_max_holders: DEFAULT_MAX,
        },
        &Op::Settle { ms } => Command::SetSettleTime { settle_ms: ms, now },
        &Op::Control { h, which } => {
            let (holder, by) = (HOLDERS[h].to_owned(), "ops".to_owned());
            match which {
                0 => Command::Hold {
                    holder,
                    reason: REASONS[h % REASONS.len()].into(),
                    by,
                    now,
                },
                1 => Command::Unhold { holder, by, now },
                c => Command::RebootNow {
                    holder,
                    cancel: c == 3,
                    by,
                    now,
                },
            }
        }
        &Op::Invalid { which } => match which {
            0 => acquire_cmd("no spaces allowed", "h0", String::new(), now),
            1 => Command::Release {
                group: GROUPS[0].into(),
                holder: String::new(),
                token: None,
                now,
            },
            2 => Command::ForceRelease {
                by: "ops".into(),
                group: GROUPS[1].into(),
                holder: "bad\u{0}holder".into(),
                now,
            },
            3 => Command::Pause {
                by: "ops".into(),
                group: Some(String::new()),
                reason: "x".into(),
                now,
                default_max_holders: DEFAULT_MAX,
            },
            _ => Command::DropWaiters {
                waiters: vec![
                    WaiterRef {
                        group: GROUPS[0].into(),
                        holder: "h0".into(),
                    },
                    WaiterRef {
                        group: "bad/group".into(),
                        holder: "h0".into(),
                    },
                ],
                now,
            },
        },
    }
}

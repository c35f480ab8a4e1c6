//! The nemesis: each fault, what it cost, and the schedule of one round.

use std::time::{Duration, Instant};

use baton_proto::v1 as pb;

use super::clients::{all, leader_of, longest_gap, longest_leaderless, ms, others, probe_writes};
use super::net::Net;
use super::report::Return;
use super::voters::Chaos;
use super::{CATCH_UP_LIMIT, FAILOVER_LIMIT, FAULT, VOTERS, WINDOW};

impl Chaos {
    /// Counts a fault that starts now (on new connections).
    pub(super) fn begin(&mut self, fault: &'static str) {
        *self.figures.faults.entry(fault).or_default() += 1;
        self.clients = self.clients.fresh();
    }

    /// From a fault at `from`: until a write sent to `targets` after it is answered.
    pub(super) async fn failover(&mut self, fault: &'static str, from: Instant, targets: &[usize]) {
        let answered = probe_writes(&self.clients, targets, FAILOVER_LIMIT, true).await;
        let took = answered.first().map(|at| ms(at.duration_since(from)));
        match took {
            Some(took) => {
                eprintln!("chaos: {fault}: a new leader answered a write after {took} ms")
            }
            None => eprintln!("chaos: {fault}: no write answered within {FAILOVER_LIMIT:?}"),
        }
        self.figures.failover.entry(fault).or_default().push(took);
    }

    /// Watches voter `voter` come back at `healed`: writes through the others
    /// for [`WINDOW`], its applied index until it reaches `before`'s, and the
    /// term and leader after.
    pub(super) async fn observe_return(
        &mut self,
        fault: &'static str,
        voter: usize,
        before: &pb::StatusResponse,
        mut returning_term: Option<u64>,
        healed: Instant,
    ) {
        self.clients = self.clients.fresh();
        let targets = others(voter);
        let writes = probe_writes(&self.clients, &targets, WINDOW, false);
        let clients = self.clients.clone();
        let target = before.last_applied;
        let catch_up = async {
            let deadline = healed + CATCH_UP_LIMIT;
            loop {
                if let Some(status) = clients.stale(voter).await {
                    returning_term.get_or_insert(status.term);
                    if status.last_applied >= target {
                        return Some(healed.elapsed());
                    }
                }
                if Instant::now() > deadline {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let leaderless = longest_leaderless(&self.clients, WINDOW);
        let (answered, catch_up, leaderless) = tokio::join!(writes, catch_up, leaderless);
        let longest_gap = longest_gap(healed, healed + WINDOW, answered);
        let after = self.leader(&all()).await;
        let back = Return {
            fault,
            voter,
            term_before: before.term,
            returning_term,
            term_after: after.term,
            leader_before: leader_of(before),
            leader_after: leader_of(&after),
            leaderless,
            longest_gap,
            catch_up,
        };
        eprintln!(
            "chaos: {fault}: {} came back (own term {}): term {} -> {}, leader {} -> {}, \
             leaderless {} ms, longest write gap {} ms, caught up in {}",
            self.name(voter),
            back.returning_term
                .map_or("unknown".to_string(), |t| t.to_string()),
            back.term_before,
            back.term_after,
            self.name(back.leader_before),
            self.name(back.leader_after),
            ms(back.leaderless),
            ms(back.longest_gap),
            back.catch_up
                .map_or(format!("more than {CATCH_UP_LIMIT:?}"), |d| format!(
                    "{} ms",
                    ms(d)
                )),
        );
        self.figures.returns.push(back);
    }

    /// kill -9 of the leader; restarted with the same state after [`FAULT`].
    pub(super) async fn kill_leader(&mut self) {
        let fault = "kill-leader";
        self.begin(fault);
        let leader = leader_of(&self.leader(&all()).await);
        eprintln!("chaos: {fault}: kill -9 {}", self.name(leader));
        self.voters[leader].kill();
        let from = Instant::now();
        self.failover(fault, from, &others(leader)).await;
        tokio::time::sleep_until((from + FAULT).into()).await;
        let before = self.leader(&others(leader)).await;
        self.voters[leader].start(&self.bin);
        let healed = Instant::now();
        self.observe_return(fault, leader, &before, None, healed)
            .await;
    }

    /// SIGSTOP of the leader; SIGCONT after [`FAULT`].
    pub(super) async fn stop_leader(&mut self) {
        let fault = "stop-leader";
        self.begin(fault);
        let status = self.leader(&all()).await;
        let leader = leader_of(&status);
        eprintln!("chaos: {fault}: SIGSTOP {}", self.name(leader));
        self.voters[leader].signal(nix::sys::signal::Signal::SIGSTOP);
        let from = Instant::now();
        self.failover(fault, from, &others(leader)).await;
        tokio::time::sleep_until((from + FAULT).into()).await;
        let before = self.leader(&others(leader)).await;
        self.voters[leader].signal(nix::sys::signal::Signal::SIGCONT);
        let healed = Instant::now();
        self.observe_return(fault, leader, &before, Some(status.term), healed)
            .await;
    }

    /// Voter `victim` (the leader or a follower) loses its link for [`FAULT`].
    pub(super) async fn isolate(&mut self, fault: &'static str, leader: bool) {
        self.begin(fault);
        let status = self.leader(&all()).await;
        let victim = if leader {
            leader_of(&status)
        } else {
            (leader_of(&status) + 1) % VOTERS
        };
        eprintln!("chaos: {fault}: {} loses its link", self.name(victim));
        self.net.isolate(victim, true);
        let from = Instant::now();
        if leader {
            self.failover(fault, from, &others(victim)).await;
        }
        tokio::time::sleep_until((from + FAULT).into()).await;
        let own = self.term_inside(victim).await;
        let before = self.leader(&others(victim)).await;
        self.net.isolate(victim, false);
        let healed = Instant::now();
        self.observe_return(fault, victim, &before, own, healed)
            .await;
    }

    /// The leader and one follower cannot reach each other for [`FAULT`];
    /// both still reach the third voter.
    pub(super) async fn cut_leader_follower(&mut self) {
        let fault = "cut-leader-follower";
        self.begin(fault);
        let status = self.leader(&all()).await;
        let leader = leader_of(&status);
        let follower = (leader + 1) % VOTERS;
        eprintln!(
            "chaos: {fault}: {} and {} cannot reach each other",
            self.name(leader),
            self.name(follower)
        );
        self.net.cut(leader, follower, true);
        let from = Instant::now();
        let answered = probe_writes(&self.clients, &others(follower), FAULT, false).await;
        let gap = longest_gap(from, from + FAULT, answered);
        eprintln!(
            "chaos: {fault}: longest write gap during the cut {} ms",
            ms(gap)
        );
        let own = self.clients.stale(follower).await.map(|s| s.term);
        let before = self.leader(&others(follower)).await;
        self.net.cut(leader, follower, false);
        let healed = Instant::now();
        self.observe_return(fault, follower, &before, own, healed)
            .await;
    }

    /// Every voter's link degraded for [`FAULT`]: writes go on through all.
    pub(super) async fn degrade(&mut self, fault: &'static str, apply: impl Fn(&Net, bool)) {
        self.begin(fault);
        let before = self.leader(&all()).await;
        eprintln!("chaos: {fault}: on every voter's link");
        apply(&self.net, true);
        let from = Instant::now();
        let answered = probe_writes(&self.clients, &all(), FAULT, false).await;
        apply(&self.net, false);
        self.clients = self.clients.fresh();
        let gap = longest_gap(from, from + FAULT, answered);
        let after = self.leader(&all()).await;
        eprintln!(
            "chaos: {fault}: term {} -> {}, leader {} -> {}, longest write gap {} ms",
            before.term,
            after.term,
            self.name(leader_of(&before)),
            self.name(leader_of(&after)),
            ms(gap)
        );
        self.figures
            .degraded
            .push((fault, before.term, after.term, gap));
    }

    pub(super) fn skip(&mut self, why: String) {
        if !self.figures.skipped.contains(&why) {
            eprintln!("chaos: skipped: {why}");
            self.figures.skipped.push(why);
        }
    }

    /// One round of the schedule, each fault healed before the next.
    pub(super) async fn round(&mut self) {
        self.kill_leader().await;
        self.wait_healthy().await;
        self.stop_leader().await;
        self.wait_healthy().await;
        self.isolate("isolate-follower", false).await;
        self.wait_healthy().await;
        self.isolate("isolate-leader", true).await;
        self.wait_healthy().await;
        self.cut_leader_follower().await;
        self.wait_healthy().await;
        if self.net.nft {
            self.degrade("loss-5%", |net, on| net.loss(5, on)).await;
            self.wait_healthy().await;
        } else {
            self.skip("loss-5%: `nft` is not installed (apt-get install nftables)".into());
        }
        match self.net.no_netem.clone() {
            None => {
                self.degrade("netem-delay-50ms-loss-5%", |net, on| {
                    net.netem("delay 50ms loss 5%", on)
                })
                .await;
                self.wait_healthy().await;
            }
            Some(why) => self.skip(format!("netem delay: this kernel has no sch_netem ({why})")),
        }
    }
}

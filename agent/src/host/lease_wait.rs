//! The host agent's wait for the lease: queued on a Wait stream, then the slot claimed.

use std::time::Duration;

use baton_proto::v1 as pb;
use tracing::{info, warn};

use crate::host::agent::{HostAgent, RETRY};
use crate::host::lease_client::Acquired;
use crate::rules::phases::{Event, RememberedLease};

impl HostAgent {
    pub(super) async fn waiting_for_lease(&mut self) -> Option<Event> {
        let now = jiff::Timestamp::now();
        if self.orders.held.is_some() || !self.may_reboot_now(now) {
            if let Some(held) = &self.orders.held {
                info!("held by admin: {held}; leaving the queue");
            } else if let Some((until, _)) = self.windows.frozen_at(now) {
                let until = self.windows.local_time(until);
                info!("a freeze began before a grant (until {until}); leaving the queue");
            } else {
                info!("reboot window closed before a grant; leaving the queue");
            }
            if let Err(e) = self.lease.release(None).await {
                warn!("could not leave the queue (the waiter TTL will drop us): {e}");
            }
            return Some(Event::WindowClosed);
        }
        if self.wait_stream.is_none() {
            match self.lease.wait().await {
                Ok(stream) => self.wait_stream = Some(stream),
                Err(e) => {
                    warn!("cannot queue for the lease: {e}");
                    // Perhaps an admin held this host: the next round leaves.
                    self.learn_orders().await;
                    self.wait(RETRY).await;
                    return None;
                }
            }
        }
        // The next message on the stream (a new place, or the grant), or the
        // window closing or a freeze starting, whichever comes first; the
        // watchdog is fed meanwhile. A host asked to reboot now waits
        // regardless of its window.
        let closes = if self.orders.reboot_now_by.is_some() {
            None
        } else {
            self.windows
                .closes_at(now)
                .and_then(|t| Duration::try_from(t.duration_since(now)).ok())
        };
        let stream = self.wait_stream.as_mut()?;
        let next = Self::with_watchdog(&self.notify, async {
            match closes {
                Some(closes) => tokio::time::timeout(closes, stream.message()).await.ok(),
                None => Some(stream.message().await),
            }
        })
        .await;
        // Window closed: the next round leaves the queue.
        let next = next?;
        match next {
            Ok(Some(pb::WaitEvent {
                kind: Some(pb::wait_event::Kind::Queued(queued)),
            })) => {
                let place = (queued.position, queued.waiters);
                if self.last_position != Some(place) {
                    self.last_position = Some(place);
                    let text = format!(
                        "waiting for lease: position {} of {} ({})",
                        queued.position, queued.waiters, queued.reason
                    );
                    info!("{text}");
                    self.notify.status(&text);
                }
                None
            }
            Ok(Some(pb::WaitEvent {
                kind: Some(pb::wait_event::Kind::Granted(_)),
            })) => {
                self.wait_stream = None;
                // Take the slot: one handed over on release is ours only once
                // we claim it; one we hold already comes back as it is.
                self.claim().await
            }
            Ok(Some(pb::WaitEvent { kind: None })) => None,
            Err(status) if self.lease.wait_refused_as_late(&status) => {
                info!("{}; queueing again", status.message());
                self.wait_stream = None;
                None
            }
            Err(status) => {
                warn!("the wait stream broke: {}", status.message());
                self.wait_stream = None;
                self.lease.stream_broke();
                // A hold ends the stream (the host left the queue, and may
                // not queue again): learn it, and the next round leaves.
                self.learn_orders().await;
                if self.orders.held.is_none() {
                    self.wait(RETRY).await;
                }
                None
            }
            Ok(None) => {
                self.wait_stream = None;
                self.lease.stream_broke();
                None
            }
        }
    }

    /// Takes the slot the Wait stream announced.
    async fn claim(&mut self) -> Option<Event> {
        match self.lease.acquire().await {
            Ok(Acquired::Granted(held)) => {
                let remembered = RememberedLease {
                    group: held.group().to_string(),
                    holder: held.holder().to_string(),
                    token: held.token(),
                };
                info!("lease granted ({held})");
                self.held = Some(held);
                Some(Event::Granted(remembered))
            }
            Ok(Acquired::Queued {
                position,
                waiters,
                reason,
            }) => {
                warn!(
                    "the slot handed to us was taken back before we took it; \
                     waiting again at position {position} of {waiters} ({reason})"
                );
                None
            }
            Err(e) => {
                warn!("cannot take the lease: {e}");
                self.wait(RETRY).await;
                None
            }
        }
    }
}

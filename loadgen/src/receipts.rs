//! Delivery receipts for one session, coalesced as the server's real clients send them (the web
//! client's `ReceiptSender`, the Python example): one cumulative receipt for the newest message a
//! short pause after the first message it covers, and at once when half of the receive window is
//! unacknowledged, because at the full window the server sends the session no more messages.

use std::time::Duration;

use tokio::{
    task::{JoinError, JoinSet},
    time::{Instant, sleep_until},
};
use tonic::Status;

use crate::{
    client::{Outbox, Session},
    stats::Errors,
};

/// Longest wait between a message and the receipt that covers it, as the web client and the
/// Python example wait.
const RECEIPT_PAUSE: Duration = Duration::from_millis(150);

/// What a receipt on its way covers (messages), and how it went.
type Call = (u64, Result<(), Status>);

/// One session's receipts.
pub struct Receipts {
    /// How receipts go, and the session's id; None: the session has none (its Hello did not ask
    /// for them, or the server granted no window).
    to: Option<(Outbox, String)>,
    /// Unacknowledged messages at which a receipt goes at once: half the window.
    threshold: u64,
    /// The newest seq to the user received: what the next receipt says.
    newest: u64,
    /// Messages received that no receipt sent (or on its way) covers.
    unsent: u64,
    /// When the pause before the next receipt runs out, while one is waiting.
    due: Option<Instant>,
    /// Receipts on their way: spawned, so a grpc-web call does not hold up reading the stream.
    calls: JoinSet<Call>,
    /// How long one receipt may take.
    timeout: Duration,
    /// Receipts sent.
    sent: u64,
}

impl Receipts {
    /// Receipts for `session` (none when its Welcome granted no window); `timeout` bounds each.
    pub fn new(session: &Session, timeout: Duration) -> Self {
        Self {
            to: (session.receive_window > 0)
                .then(|| (session.outbox.clone(), session.session_id.clone())),
            threshold: session.receive_window.div_ceil(2).into(),
            newest: 0,
            unsent: 0,
            due: None,
            calls: JoinSet::new(),
            timeout,
            sent: 0,
        }
    }

    /// A message to the user arrived (a repeated one too: the server sent it again).
    pub fn received(&mut self, seq: u64) {
        if self.to.is_none() {
            return;
        }
        self.newest = self.newest.max(seq);
        self.unsent += 1;
        if self.unsent >= self.threshold {
            self.flush();
        } else {
            self.due
                .get_or_insert_with(|| Instant::now() + RECEIPT_PAUSE);
        }
    }

    /// Waits until the pause runs out (then sends the receipt) or a receipt comes back. A failed
    /// one is sent again after a pause: it may be the last the session needed, with the server
    /// waiting on a full window. Cancel-safe, for `select!`.
    pub async fn wait(&mut self, errors: &mut Errors) {
        let due = self.due;
        let pause = async move {
            match due {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = pause => self.flush(),
            Some(joined) = self.calls.join_next() => {
                if let Some(covered) = failed(joined, errors) {
                    self.unsent += covered;
                    self.due.get_or_insert_with(|| Instant::now() + RECEIPT_PAUSE);
                }
            }
        }
    }

    /// Sends a receipt for the newest message now, if any is unacknowledged.
    pub fn flush(&mut self) {
        self.due = None;
        let Some((outbox, session_id)) = &self.to else {
            return;
        };
        if self.unsent == 0 {
            return;
        }
        let (mut outbox, session_id) = (outbox.clone(), session_id.clone());
        let (covered, up_to, timeout) = (self.unsent, self.newest, self.timeout);
        self.calls.spawn(async move {
            let sent = outbox.acknowledge(&session_id, up_to, timeout).await;
            (covered, sent)
        });
        self.unsent = 0;
        self.sent += 1;
    }

    /// Waits for the receipts on their way, counting failures; returns how many were sent.
    pub async fn finish(mut self, errors: &mut Errors) -> u64 {
        while let Some(joined) = self.calls.join_next().await {
            failed(joined, errors);
        }
        self.sent
    }
}

/// Counts a receipt that failed and returns what it covered; None when it was taken.
fn failed(joined: Result<Call, JoinError>, errors: &mut Errors) -> Option<u64> {
    match joined {
        Ok((_, Ok(()))) => None,
        Ok((covered, Err(_))) => {
            errors.add("RECEIPT_FAILED");
            Some(covered)
        }
        Err(_) => {
            errors.add("TASK_FAILED");
            None
        }
    }
}

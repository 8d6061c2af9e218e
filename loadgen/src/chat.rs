//! `chat`: P pairs of users message each other, as fast as the server acks or at a fixed total
//! rate. Each message's text starts with its send instant (nanoseconds since a base `Instant`
//! this process shares), so the recipient measures send-to-arrival latency. Every acked message
//! must reach its recipient exactly once: the report counts `lost` and `duplicates`.
//!
//! Sessions ask for delivery receipts and acknowledge what arrives as the web client does (see
//! [`crate::receipts`]), unless `--no-receipts`. What the report calls delivered is what arrived
//! on the recipient's stream; the senders' DELIVERED updates (which with receipts wait for the
//! recipient's receipt) are not measured.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Args;
use fastchat::proto::{Hello, SendMessageRequest, ServerEvent, server_event::Event};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::{
    sync::mpsc,
    task::JoinSet,
    time::{MissedTickBehavior, sleep, sleep_until},
};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use crate::{
    Common, Transport,
    baseline::{self, Baseline},
    client::{self, Links, Opening, Outbox, Sent, Session},
    receipts::Receipts,
    stats::{CpuUse, Errors, Latency, ServerProcess, histogram, record},
};

/// How many digits of send instant open each message's text, followed by a space.
const STAMP_DIGITS: usize = 20;
/// How long a grpc-web sender waits after RESOURCE_EXHAUSTED before its next message.
const REFUSED_PAUSE: Duration = Duration::from_millis(100);
/// How often the drain phase checks whether every acked message has arrived.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// The `chat` scenario's settings.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Pairs of users; each user sends to the other.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=500_000))]
    pairs: u32,
    /// Messages per second, all senders together; 0: each user sends its next message as soon
    /// as the last one is acked.
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Characters per message text (the send instant takes the first 21).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(24..=4_000))]
    message_bytes: u32,
    /// Messages each user sends at most; 0: as many as --duration-secs allows.
    #[arg(long, default_value_t = 0)]
    messages: u64,
    /// Seconds of TCP echo baseline to run first, one echo connection per user, with the same
    /// message size (0: none).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    baseline_secs: u64,
    /// Sessions do not ask for delivery receipts (Hello.receipts) and send none, as clients
    /// before receipts: to compare with the default, where they acknowledge what arrives.
    #[arg(long)]
    no_receipts: bool,
}

/// What `chat` measured.
#[derive(Debug, Serialize)]
struct ChatReport {
    /// "chat".
    scenario: &'static str,
    /// gRPC or grpc-web.
    transport: Transport,
    /// Pairs asked for.
    pairs: u32,
    /// Pairs whose two sessions both opened, and so sent.
    pairs_running: usize,
    /// Sessions that failed to open.
    sessions_failed: u64,
    /// Messages per second asked for (0: as fast as acks come).
    rate: u32,
    /// Characters per message.
    message_bytes: u32,
    /// Whether sessions asked for delivery receipts and acknowledged what arrived.
    receipts: bool,
    /// Receipts the sessions sent (0 with `receipts`: the server granted no window, as it does
    /// when it keeps no history).
    receipts_sent: u64,
    /// Messages sent (queued on a stream or called).
    sent: u64,
    /// Messages acked.
    acked: u64,
    /// Distinct messages that arrived on their recipients' streams.
    delivered: u64,
    /// Acked messages their recipient never received.
    lost: u64,
    /// Messages a recipient received more than once (each extra copy counts).
    duplicates: u64,
    /// Messages received that their sender never saw acked (the ack was lost or timed out).
    delivered_unacked: u64,
    /// The user's own messages shown back on its session: a grpc-web session sees what its user
    /// sent by unary call, as every session of the sender but the sending one does.
    own_copies: u64,
    /// Messages from someone other than the peer or the user, or with a foreign client_msg_id.
    unexpected: u64,
    /// Failures by code: RATE_LIMITED, status codes, ACK_TIMEOUT, STREAM_ENDED, ...
    errors: Errors,
    /// All failures together.
    errors_total: u64,
    /// From the first send to the last arrival.
    secs: f64,
    /// Distinct deliveries per second over `secs`.
    delivered_per_sec: f64,
    /// Acks per second over `secs`.
    acked_per_sec: f64,
    /// From the send to the arrival on the recipient's stream.
    latency: Latency,
    /// Servers the sessions were spread over (`--server`).
    servers: usize,
    /// CPU the server processes (`--server-pid`, added up) used from the first send to the
    /// last arrival.
    server_cpu: Option<CpuUse>,
    /// That CPU per distinct delivery, in microseconds.
    server_cpu_us_per_delivered: Option<f64>,
    /// The loopback TCP echo run before, when asked for.
    baseline: Option<Baseline>,
    /// `delivered_per_sec` over the echo's round trips per second.
    delivered_per_sec_vs_baseline: Option<f64>,
    /// Median latency over the echo's median round trip.
    latency_p50_vs_baseline: Option<f64>,
    /// 99th percentile latency over the echo's.
    latency_p99_vs_baseline: Option<f64>,
}

/// Counters every task updates, so the drain phase knows when everything has arrived.
#[derive(Default)]
struct Progress {
    /// Messages sent.
    sent: AtomicU64,
    /// Messages acked or refused.
    resolved: AtomicU64,
    /// Messages acked.
    acked: AtomicU64,
    /// Distinct messages received.
    delivered: AtomicU64,
}

/// What a native session's reader tells its sender about each of its messages.
enum AckNote {
    /// Acked.
    Acked,
    /// Refused; the next message may go after this long.
    Refused(Duration),
}

/// What one user's stream brought.
struct Received {
    /// The ids of the peer's messages received.
    from_peer: HashSet<u64>,
    /// Extra copies of those.
    duplicates: u64,
    /// The user's own messages shown back.
    own_copies: u64,
    /// Messages from anyone else.
    unexpected: u64,
    /// Acks of this user's messages (native sessions).
    acked: HashSet<u64>,
    /// Delivery latencies.
    latency: Histogram<u64>,
    /// Failures seen on the stream, and failed receipts.
    errors: Errors,
    /// When the last of the peer's messages arrived.
    last_arrival: Option<Instant>,
    /// Receipts sent.
    receipts_sent: u64,
}

/// What one user's sender did.
struct SendTally {
    /// Acks of this user's messages (grpc-web calls).
    acked: HashSet<u64>,
    /// Failed sends.
    errors: Errors,
}

/// How every sender sends.
#[derive(Clone, Copy)]
struct Plan {
    /// The instant message texts count from.
    base: Instant,
    /// When sending stops.
    deadline: Instant,
    /// Messages per sender at most.
    max_messages: Option<u64>,
    /// Time between one sender's messages at a fixed rate; None: the next after the ack.
    interval: Option<Duration>,
    /// Characters per text.
    message_bytes: usize,
    /// How long an ack or a receipt may take.
    timeout: Duration,
}

/// Runs `chat`.
pub async fn run(common: &Common, args: &ChatArgs) -> anyhow::Result<impl Serialize> {
    let users = 2 * args.pairs as usize;
    let baseline = if args.baseline_secs > 0 {
        let connections = users.min(5_000) as u32;
        let duration = Duration::from_secs(args.baseline_secs);
        Some(baseline::measure(connections, args.message_bytes, duration).await?)
    } else {
        None
    };

    let links = Links::new(common, users)?;
    let opening = Opening {
        wait_snapshot: false,
        keep_events: true,
        timeout: common.timeout(),
    };
    let opened = client::open_all(
        &links,
        users,
        common.open_concurrency as usize,
        opening,
        |index| Hello {
            display_name: format!("chat-{index}"),
            receipts: !args.no_receipts,
            ..Default::default()
        },
    )
    .await;
    let mut errors = opened.errors.clone();
    let sessions_failed = errors.total();
    // Pair 2k with 2k+1, keeping only pairs whose two sessions opened.
    let mut sessions = opened.sessions.into_iter().peekable();
    let mut pairs = Vec::new();
    while let Some((index, first)) = sessions.next() {
        if index % 2 == 0
            && let Some((next, _)) = sessions.peek()
            && *next == index + 1
        {
            let (_, second) = sessions.next().expect("peeked");
            pairs.push((first, second));
        }
    }

    let senders = 2 * pairs.len() as u64;
    let server = ServerProcess::new(&common.server_pid)?;
    let cpu_before = server.cpu_secs();
    let started = Instant::now();
    let plan = Plan {
        base: started,
        deadline: started + common.duration(),
        max_messages: (args.messages > 0).then_some(args.messages),
        interval: (args.rate > 0)
            .then(|| Duration::from_secs_f64(senders as f64 / args.rate as f64)),
        message_bytes: args.message_bytes as usize,
        timeout: common.timeout(),
    };
    let progress = Arc::new(Progress::default());
    let stop = CancellationToken::new();
    let (mut readers, mut writers) = (JoinSet::new(), JoinSet::new());
    // The outboxes stay open until the end: a native stream whose client side ends is closed
    // by the server, and the peer may still be sending (and the last receipts go on them).
    let mut outboxes = Vec::new();
    for (pair, (first, second)) in pairs.into_iter().enumerate() {
        let ids = [first.user_id.clone(), second.user_id.clone()];
        for (side, session) in [first, second].into_iter().enumerate() {
            let user = 2 * pair + side;
            let peer = ids[1 - side].clone();
            let closed_loop = plan.interval.is_none();
            let (notes, noted) = match session.outbox {
                Outbox::Grpc(_) if closed_loop => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    (Some(tx), Some(rx))
                }
                _ => (None, None),
            };
            let outbox = session.outbox.clone();
            outboxes.push(outbox.clone());
            let reading = read(
                session,
                peer.clone(),
                plan,
                notes,
                progress.clone(),
                stop.clone(),
            );
            readers.spawn(async move { (user, reading.await) });
            // Senders at a fixed rate start spread over one interval: started together, they would
            // all send in the same instant, a burst of every user's message each interval.
            let phase = plan
                .interval
                .unwrap_or_default()
                .mul_f64(user as f64 / senders as f64);
            let writing = write(outbox, peer, plan, phase, noted, progress.clone());
            writers.spawn(async move { (user, writing.await) });
        }
    }

    let mut sent_by: Vec<Option<SendTally>> = (0..outboxes.len()).map(|_| None).collect();
    while let Some(joined) = writers.join_next().await {
        let (user, tally) = joined?;
        sent_by[user] = Some(tally);
    }
    // Wait until every message is acked or refused and every acked one has arrived.
    let drain_deadline = Instant::now() + common.timeout();
    while Instant::now() < drain_deadline {
        let sent = progress.sent.load(Ordering::Relaxed);
        let resolved = progress.resolved.load(Ordering::Relaxed);
        let acked = progress.acked.load(Ordering::Relaxed);
        let delivered = progress.delivered.load(Ordering::Relaxed);
        if resolved >= sent && delivered >= acked {
            break;
        }
        sleep(DRAIN_POLL).await;
    }
    stop.cancel();
    let cpu_after = server.cpu_secs();
    let mut received_by: Vec<Option<Received>> = (0..sent_by.len()).map(|_| None).collect();
    while let Some(joined) = readers.join_next().await {
        let (user, received) = joined?;
        received_by[user] = Some(received);
    }
    drop(outboxes);

    let mut latency = histogram();
    let (mut lost, mut duplicates, mut delivered_unacked) = (0, 0, 0);
    let (mut own_copies, mut unexpected) = (0, 0);
    let (mut acked_total, mut delivered_total, mut receipts_sent) = (0, 0, 0);
    let mut last_arrival = started;
    for user in 0..sent_by.len() {
        let (Some(sent), Some(mine)) = (&sent_by[user], &received_by[user]) else {
            continue;
        };
        let Some(peer) = &received_by[user ^ 1] else {
            continue;
        };
        let acked: HashSet<u64> = mine.acked.union(&sent.acked).copied().collect();
        lost += acked.difference(&peer.from_peer).count() as u64;
        delivered_unacked += peer.from_peer.difference(&acked).count() as u64;
        acked_total += acked.len() as u64;
        delivered_total += mine.from_peer.len() as u64;
        receipts_sent += mine.receipts_sent;
        duplicates += mine.duplicates;
        own_copies += mine.own_copies;
        unexpected += mine.unexpected;
        latency.add(&mine.latency)?;
        errors.merge(&sent.errors);
        errors.merge(&mine.errors);
        last_arrival = last_arrival.max(mine.last_arrival.unwrap_or(started));
    }
    let secs = (last_arrival - started).as_secs_f64().max(1e-9);
    let latency = Latency::of(&latency);
    let ratio = |ours: f64, theirs: f64| (theirs > 0.0).then(|| ours / theirs);
    let delivered_per_sec = delivered_total as f64 / secs;
    let server_cpu = CpuUse::between(cpu_before, cpu_after, last_arrival - started);
    let server_cpu_us_per_delivered = server_cpu
        .as_ref()
        .and_then(|cpu| ratio(1e6 * cpu.cpu_secs, delivered_total as f64));
    Ok(ChatReport {
        scenario: "chat",
        transport: common.transport,
        pairs: args.pairs,
        pairs_running: sent_by.len() / 2,
        sessions_failed,
        rate: args.rate,
        message_bytes: args.message_bytes,
        receipts: !args.no_receipts,
        receipts_sent,
        sent: progress.sent.load(Ordering::Relaxed),
        acked: acked_total,
        delivered: delivered_total,
        lost,
        duplicates,
        delivered_unacked,
        own_copies,
        unexpected,
        errors_total: errors.total(),
        errors,
        secs,
        delivered_per_sec,
        acked_per_sec: acked_total as f64 / secs,
        delivered_per_sec_vs_baseline: baseline
            .as_ref()
            .and_then(|b| ratio(delivered_per_sec, b.round_trips_per_sec)),
        latency_p50_vs_baseline: baseline
            .as_ref()
            .and_then(|b| ratio(latency.p50_ms, b.round_trip_latency.p50_ms)),
        latency_p99_vs_baseline: baseline
            .as_ref()
            .and_then(|b| ratio(latency.p99_ms, b.round_trip_latency.p99_ms)),
        latency,
        servers: common.server.len(),
        server_cpu,
        server_cpu_us_per_delivered,
        baseline,
    })
}

/// The `client_msg_id` of a user's message number `id`: a UUIDv7, time-ordered as FastChat's
/// clients make keys (so the server's key index appends), then the number.
fn message_key(id: u64) -> String {
    format!("{}-{id}", uuid::Uuid::now_v7().simple())
}

/// The message number a key of [`message_key`] carries.
fn message_number(key: &str) -> Option<u64> {
    key.rsplit_once('-')?.1.parse().ok()
}

/// A message text of `bytes` characters starting with the send instant.
fn stamped_text(base: Instant, bytes: usize) -> String {
    let mut text = format!(
        "{:0width$} ",
        base.elapsed().as_nanos(),
        width = STAMP_DIGITS
    );
    text.extend(std::iter::repeat_n('x', bytes.saturating_sub(text.len())));
    text
}

/// When a [`stamped_text`] was sent.
fn sent_at(base: Instant, text: &str) -> Option<Instant> {
    let nanos: u64 = text.get(..STAMP_DIGITS)?.parse().ok()?;
    Some(base + Duration::from_nanos(nanos))
}

/// Reads `session`'s stream until `stop`: the peer's messages (acknowledged with receipts when
/// the session has them), and acks and refusals of the user's own (told to the sender through
/// `notes` when it waits for them).
async fn read(
    session: Session,
    peer: String,
    plan: Plan,
    notes: Option<mpsc::UnboundedSender<AckNote>>,
    progress: Arc<Progress>,
    stop: CancellationToken,
) -> Received {
    let mut receipts = Receipts::new(&session, plan.timeout);
    let (mut events, me) = (session.events, session.user_id);
    let mut received = Received {
        from_peer: HashSet::new(),
        duplicates: 0,
        own_copies: 0,
        unexpected: 0,
        acked: HashSet::new(),
        latency: histogram(),
        errors: Errors::default(),
        last_arrival: None,
        receipts_sent: 0,
    };
    let note = |note: AckNote| {
        if let Some(notes) = &notes {
            let _ = notes.send(note);
        }
    };
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => {
                // What arrived since the last receipt, as a client closing its session sends it.
                receipts.flush();
                break;
            }
            () = receipts.wait(&mut received.errors) => continue,
            next = events.recv() => next,
        };
        let event = match next {
            Some(Ok(ServerEvent { event: Some(event) })) => event,
            Some(Ok(_)) => continue,
            None => {
                received.errors.add("STREAM_ENDED");
                break;
            }
            Some(Err(status)) => {
                received.errors.status(&status);
                break;
            }
        };
        match event {
            Event::Message(message) => {
                let now = Instant::now();
                if message.to_user_id == me {
                    receipts.received(message.seq);
                }
                if message.from_user_id == me {
                    received.own_copies += 1;
                    continue;
                }
                let id = message_number(&message.client_msg_id);
                let Some(id) = id.filter(|_| message.from_user_id == peer) else {
                    received.unexpected += 1;
                    continue;
                };
                if !received.from_peer.insert(id) {
                    received.duplicates += 1;
                    continue;
                }
                progress.delivered.fetch_add(1, Ordering::Relaxed);
                received.last_arrival = Some(now);
                if let Some(sent) = sent_at(plan.base, &message.text) {
                    record(&mut received.latency, now.saturating_duration_since(sent));
                }
            }
            Event::Ack(ack) => {
                if let Some(id) = message_number(&ack.client_msg_id)
                    && received.acked.insert(id)
                {
                    progress.acked.fetch_add(1, Ordering::Relaxed);
                    progress.resolved.fetch_add(1, Ordering::Relaxed);
                } else {
                    received.errors.add("UNKNOWN_OR_REPEATED_ACK");
                }
                note(AckNote::Acked);
            }
            Event::Error(error) => {
                received.errors.add(&error.code);
                if !error.client_msg_id.is_empty() {
                    progress.resolved.fetch_add(1, Ordering::Relaxed);
                    let retry_after = Duration::from_millis(error.retry_after_ms.into());
                    note(AckNote::Refused(retry_after));
                }
            }
            _ => {}
        }
    }
    received.receipts_sent = receipts.finish(&mut received.errors).await;
    received
}

/// Sends one user's messages to `peer` as `plan` says; at a fixed rate, the first `phase` after
/// the start.
async fn write(
    mut outbox: Outbox,
    peer: String,
    plan: Plan,
    phase: Duration,
    mut noted: Option<mpsc::UnboundedReceiver<AckNote>>,
    progress: Arc<Progress>,
) -> SendTally {
    let mut tally = SendTally {
        acked: HashSet::new(),
        errors: Errors::default(),
    };
    let mut ticker = plan.interval.map(|interval| {
        let first = tokio::time::Instant::from_std(plan.base) + phase;
        let mut ticker = tokio::time::interval_at(first, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker
    });
    let deadline = tokio::time::Instant::from_std(plan.deadline);
    // Calls in flight at a fixed rate over grpc-web.
    let mut calls = JoinSet::new();
    let mut id = 0u64;
    while Instant::now() < plan.deadline && plan.max_messages.is_none_or(|max| id < max) {
        if let Some(ticker) = &mut ticker {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = sleep_until(deadline) => break,
            }
        }
        let message = SendMessageRequest {
            client_msg_id: message_key(id),
            to_user_id: peer.clone(),
            text: stamped_text(plan.base, plan.message_bytes),
            ..Default::default()
        };
        progress.sent.fetch_add(1, Ordering::Relaxed);
        if ticker.is_some() && matches!(outbox, Outbox::Web(_)) {
            let mut outbox = outbox.clone();
            calls.spawn(async move { (id, outbox.send(message, plan.timeout).await) });
            id += 1;
            continue;
        }
        let sent = outbox.send(message, plan.timeout).await;
        let refused = settle(id, sent, &mut tally, &progress);
        id += 1;
        if let Some(status) = refused {
            if status.code() == Code::Cancelled {
                break; // the stream is gone: nothing more can be sent on it
            }
            if status.code() == Code::ResourceExhausted {
                sleep(REFUSED_PAUSE).await;
            }
            continue;
        }
        if let Some(noted) = &mut noted {
            match tokio::time::timeout(plan.timeout, noted.recv()).await {
                Ok(Some(AckNote::Acked)) => {}
                Ok(Some(AckNote::Refused(retry_after))) => sleep(retry_after).await,
                Ok(None) | Err(_) => {
                    tally.errors.add("ACK_TIMEOUT");
                    break;
                }
            }
        }
    }
    while let Some(joined) = calls.join_next().await {
        match joined {
            Ok((id, sent)) => {
                settle(id, sent, &mut tally, &progress);
            }
            Err(_) => tally.errors.add("TASK_FAILED"),
        }
    }
    tally
}

/// Counts what became of message `id`; returns the status when it was refused.
fn settle(
    id: u64,
    sent: Result<Sent, Status>,
    tally: &mut SendTally,
    progress: &Progress,
) -> Option<Status> {
    match sent {
        Ok(Sent::Queued) => None,
        Ok(Sent::Acked) => {
            tally.acked.insert(id);
            progress.acked.fetch_add(1, Ordering::Relaxed);
            progress.resolved.fetch_add(1, Ordering::Relaxed);
            None
        }
        Err(status) => {
            tally.errors.status(&status);
            progress.resolved.fetch_add(1, Ordering::Relaxed);
            Some(status)
        }
    }
}

//! `presence`: M anonymous watchers of every user (WatchPresence with `every_user`, as dashboards
//! watch) look on while N users join, spread evenly
//! over --duration-secs; reports how long each user's ONLINE change takes to reach the watchers,
//! from the moment the user started opening its session.

use std::{
    collections::HashMap,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Args;
use fastchat::proto::{Hello, PresenceStatus, presence_event};
use serde::Serialize;
use tokio::{task::JoinSet, time::sleep};
use tokio_util::sync::CancellationToken;

use crate::{
    Common, Transport,
    client::{self, Links, Opening},
    stats::{Errors, Latency, histogram, record},
};

/// How often the run checks whether every watcher has seen every join.
const POLL: Duration = Duration::from_millis(10);

/// The `presence` scenario's settings.
#[derive(Debug, Args)]
pub struct PresenceArgs {
    /// Users joining, each a new user with one session.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    users: u32,
    /// Anonymous watchers looking on.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    watchers: u32,
}

/// What `presence` measured.
#[derive(Debug, Serialize)]
struct PresenceReport {
    /// "presence".
    scenario: &'static str,
    /// gRPC or grpc-web.
    transport: Transport,
    /// Users asked for.
    users: u32,
    /// Users whose session opened.
    users_joined: u64,
    /// Users whose session did not.
    users_failed: u64,
    /// Watchers asked for.
    watchers: u32,
    /// Watchers whose stream opened and gave its snapshot.
    watchers_open: usize,
    /// Watchers that saw every joined user come online.
    watchers_complete: usize,
    /// Joins times open watchers.
    changes_expected: u64,
    /// Joins the watchers saw.
    changes_seen: u64,
    /// Joins a watcher never saw.
    changes_missing: u64,
    /// The window the joins were spread over.
    join_secs: u64,
    /// Failures by code (sessions and watchers).
    errors: Errors,
    /// From a user starting to open its session to a watcher seeing it ONLINE.
    latency: Latency,
}

/// Runs `presence`.
pub async fn run(common: &Common, args: &PresenceArgs) -> anyhow::Result<impl Serialize> {
    let (users, watchers) = (args.users as usize, args.watchers as usize);
    let links = Links::new(common, watchers + users)?;
    let mut errors = Errors::default();

    let mut opening = JoinSet::new();
    for index in 0..watchers {
        let link = links.for_session(index);
        opening.spawn(client::watch_presence(link, true, common.timeout()));
    }
    let mut streams = Vec::new();
    while let Some(joined) = opening.join_next().await {
        match joined? {
            Ok(stream) => streams.push(stream),
            Err(status) => errors.status(&status),
        }
    }
    let watchers_open = streams.len();

    let user_ids: Vec<String> = (0..users)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let index_of: Arc<HashMap<String, usize>> = Arc::new(
        user_ids
            .iter()
            .enumerate()
            .map(|(index, id)| (id.clone(), index))
            .collect(),
    );
    let joined_at: Arc<Vec<OnceLock<Instant>>> =
        Arc::new((0..users).map(|_| OnceLock::new()).collect());
    let seen_total = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();

    let mut watching = JoinSet::new();
    for mut stream in streams {
        let (index_of, joined_at) = (index_of.clone(), joined_at.clone());
        let (seen_total, stop) = (seen_total.clone(), stop.clone());
        watching.spawn(async move {
            let mut seen = vec![false; index_of.len()];
            let (mut seen_count, mut latency, mut errors) = (0u64, histogram(), Errors::default());
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => break,
                    next = stream.message() => next,
                };
                let event = match next {
                    Ok(Some(event)) => event,
                    Ok(None) => {
                        errors.add("STREAM_ENDED");
                        break;
                    }
                    Err(status) => {
                        errors.status(&status);
                        break;
                    }
                };
                let now = Instant::now();
                let Some(presence_event::Event::Change(change)) = event.event else {
                    continue;
                };
                let Some(presence) = change.presence else {
                    continue;
                };
                let user = presence.user.as_ref().map(|user| user.user_id.as_str());
                let Some(&index) = user.and_then(|id| index_of.get(id)) else {
                    continue;
                };
                if presence.status() != PresenceStatus::Online || seen[index] {
                    continue;
                }
                seen[index] = true;
                seen_count += 1;
                seen_total.fetch_add(1, Ordering::Relaxed);
                match joined_at[index].get() {
                    Some(joined) => record(&mut latency, now.saturating_duration_since(*joined)),
                    None => errors.add("ONLINE_BEFORE_JOIN"),
                }
            }
            (seen_count, latency, errors)
        });
    }

    // Users join at evenly spaced instants over the window, each holding its session, reading
    // what the server sends it, until the end.
    let started = Instant::now();
    let spacing = common.duration().div_f64(users as f64);
    let mut joining = JoinSet::new();
    for (index, user_id) in user_ids.into_iter().enumerate() {
        let link = links.for_session(watchers + index);
        let (joined_at, stop) = (joined_at.clone(), stop.clone());
        let session_opening = Opening {
            wait_snapshot: false,
            keep_events: false,
            timeout: common.timeout(),
        };
        joining.spawn(async move {
            tokio::time::sleep_until((started + spacing * index as u32).into()).await;
            let _ = joined_at[index].set(Instant::now());
            let hello = Hello {
                user_id,
                display_name: format!("presence-{index}"),
                ..Default::default()
            };
            let session = client::open(link, hello, session_opening).await?;
            tokio::spawn(async move {
                // The whole session, not only its events: dropping its outbox would end the
                // Chat stream, and the user would leave as soon as it joined.
                let mut session = session;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        next = session.events.recv() => if !matches!(next, Some(Ok(_))) { break },
                    }
                }
            });
            Ok::<_, tonic::Status>(())
        });
    }
    let mut users_joined = 0u64;
    while let Some(joined) = joining.join_next().await {
        match joined? {
            Ok(()) => users_joined += 1,
            Err(status) => errors.status(&status),
        }
    }

    let changes_expected = users_joined * watchers_open as u64;
    let deadline = Instant::now() + common.timeout();
    while seen_total.load(Ordering::Relaxed) < changes_expected && Instant::now() < deadline {
        sleep(POLL).await;
    }
    stop.cancel();
    let (mut latency, mut watchers_complete, mut changes_seen) = (histogram(), 0, 0);
    while let Some(joined) = watching.join_next().await {
        let (seen, watched, watcher_errors) = joined?;
        changes_seen += seen;
        watchers_complete += usize::from(seen >= users_joined);
        latency.add(&watched)?;
        errors.merge(&watcher_errors);
    }

    Ok(PresenceReport {
        scenario: "presence",
        transport: common.transport,
        users: args.users,
        users_joined,
        users_failed: args.users as u64 - users_joined,
        watchers: args.watchers,
        watchers_open,
        watchers_complete,
        changes_expected,
        changes_seen,
        changes_missing: changes_expected.saturating_sub(changes_seen),
        join_secs: common.duration_secs,
        errors,
        latency: Latency::of(&latency),
    })
}

//! Rate limits: a token bucket per user and kind of action, and per client address for new
//! sessions and for claims of new user ids. governor's buckets (GCRA) refill continuously, so a
//! user who waits is let through again as soon as their allowance has grown back, not at the next
//! sweep of a counter.

use std::{net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};

use crate::{config::Config, db::ids::UserId, metrics::Metrics};

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Sending a message (stream or unary).
    Message,
    /// A typing event.
    Typing,
    /// A Ping on a stream or a Heartbeat call.
    Ping,
    /// Any other call of a signed-in user: read marks, history, conversations, status.
    Request,
    /// Opening a session (a stream).
    Session,
    /// Claiming a new user id; counted per client address only, a new user having no allowance
    /// of their own.
    Claim,
}

impl Action {
    /// The action's name in errors, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Typing => "typing",
            Self::Ping => "ping",
            Self::Request => "request",
            Self::Session => "session",
            Self::Claim => "claim",
        }
    }
}

/// A limit refused an action; the allowance has grown back after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited: too many {} actions; retry in {} ms", action.name(), retry_after.as_millis())]
pub struct RateLimited {
    /// What was refused.
    pub action: Action,
    /// How long until the next one is allowed.
    pub retry_after: Duration,
}

/// The server's rate limiters.
#[derive(Debug)]
pub struct RateLimits {
    /// Messages per user.
    messages: DefaultKeyedRateLimiter<UserId>,
    /// Typing events per user.
    typing: DefaultKeyedRateLimiter<UserId>,
    /// Pings and heartbeats per user.
    pings: DefaultKeyedRateLimiter<UserId>,
    /// Other calls per user.
    requests: DefaultKeyedRateLimiter<UserId>,
    /// New sessions per user.
    sessions: DefaultKeyedRateLimiter<UserId>,
    /// New sessions per client address, whoever opens them (watchers included).
    sessions_per_ip: DefaultKeyedRateLimiter<IpAddr>,
    /// Claims of new user ids per client address: without it one address could create users,
    /// each with a stored row and a place in the online lists, as fast as it can send.
    claims_per_ip: DefaultKeyedRateLimiter<IpAddr>,
    /// Where refusals are counted.
    metrics: Arc<Metrics>,
}

impl RateLimits {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        let sessions = config.rate_sessions_per_minute;
        let sessions_per_ip = config.rate_sessions_per_minute_per_ip;
        Self {
            messages: limiter(config.rate_messages_per_minute, config.rate_messages_burst),
            typing: limiter(config.rate_typing_per_minute, config.rate_typing_burst),
            pings: limiter(config.rate_pings_per_minute, config.rate_pings_burst),
            requests: limiter(config.rate_requests_per_minute, config.rate_requests_burst),
            sessions: limiter(sessions, sessions),
            sessions_per_ip: limiter(sessions_per_ip, sessions_per_ip),
            claims_per_ip: limiter(
                config.rate_claims_per_minute_per_ip,
                config.rate_claims_burst_per_ip,
            ),
            metrics,
        }
    }

    /// Takes one `action` from `user`'s allowance, or says how long until there is one.
    pub fn check(&self, action: Action, user: UserId) -> Result<(), RateLimited> {
        let limiter = match action {
            Action::Message => &self.messages,
            Action::Typing => &self.typing,
            Action::Ping => &self.pings,
            Action::Request => &self.requests,
            Action::Session => &self.sessions,
            Action::Claim => return Ok(()), // counted by check_claim, per address
        };
        check(limiter, &user, action)
            .inspect_err(|_| self.metrics.rate_limited(action.name(), Some(user)))
    }

    /// Checks a new session: against its user's allowance (None for anonymous watchers) and its
    /// client address's (None when unknown).
    pub fn check_new_session(
        &self,
        user: Option<UserId>,
        ip: Option<IpAddr>,
    ) -> Result<(), RateLimited> {
        if let Some(user) = user {
            self.check(Action::Session, user)?;
        }
        if let Some(ip) = ip {
            check(&self.sessions_per_ip, &ip, Action::Session)
                .inspect_err(|_| self.metrics.rate_limited(Action::Session.name(), user))?;
        }
        Ok(())
    }

    /// Checks a claim of a new user id from `ip` (None when unknown) against the address's
    /// allowance.
    pub fn check_claim(&self, ip: Option<IpAddr>) -> Result<(), RateLimited> {
        let Some(ip) = ip else { return Ok(()) };
        check(&self.claims_per_ip, &ip, Action::Claim)
            .inspect_err(|_| self.metrics.rate_limited(Action::Claim.name(), None))
    }

    /// Drops the buckets of users and addresses that are full again, so memory follows the
    /// active users, not every user ever seen.
    pub fn forget_idle(&self) {
        for limiter in [
            &self.messages,
            &self.typing,
            &self.pings,
            &self.requests,
            &self.sessions,
        ] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        for limiter in [&self.sessions_per_ip, &self.claims_per_ip] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// A keyed limiter allowing `per_minute` on average and `burst` at once.
fn limiter<K: Clone + Eq + std::hash::Hash>(
    per_minute: u32,
    burst: u32,
) -> DefaultKeyedRateLimiter<K> {
    let quota = Quota::per_minute(at_least_one(per_minute)).allow_burst(at_least_one(burst));
    DefaultKeyedRateLimiter::keyed(quota)
}

/// The config's validation keeps these above zero; this keeps a zero from panicking anyway.
fn at_least_one(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

fn check<K: Clone + Eq + std::hash::Hash>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
    action: Action,
) -> Result<(), RateLimited> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(limiter.clock().now());
        RateLimited {
            action,
            // Rounded up to whole milliseconds, so a client that waits exactly this long passes.
            retry_after: Duration::from_millis(wait.as_nanos().div_ceil(1_000_000) as u64),
        }
    })
}

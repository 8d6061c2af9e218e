//! Connections and sessions over native gRPC or grpc-web, as the server's real clients hold them.

use std::{
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    task::{Context as TaskContext, Poll},
    time::{Duration, Instant},
};

use anyhow::Context;
use fastchat::proto::{
    AcknowledgeRequest, ClientEvent, Hello, PresenceEvent, Received, SendMessageRequest,
    ServerEvent, SubscribeRequest, WatchPresenceRequest, chat_service_client::ChatServiceClient,
    client_event, presence_service_client::PresenceServiceClient, server_event::Event,
};
use http::Uri;
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::mpsc,
    task::JoinSet,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Request, Status, Streaming,
    body::Body,
    transport::{Channel, Endpoint},
};
use tonic_web::{GrpcWebCall, GrpcWebClientLayer, GrpcWebClientService};
use tower::Layer as _;

use crate::{Common, Transport, stats::Errors};

/// A hyper client under tonic-web's grpc-web layer, as a browser's grpc-web library talks.
pub type WebChannel = GrpcWebClientService<Client<SourceConnector, GrpcWebCall<Body>>>;

/// What client events a native session can have queued before sending waits.
const OUTBOX_CAPACITY: usize = 1024;

/// One client connection (or, for grpc-web over HTTP/1.1, one client with its own pool).
#[derive(Clone)]
pub enum Link {
    /// A native gRPC channel: one HTTP/2 connection, its streams multiplexed.
    Grpc(Channel),
    /// A grpc-web client (boxed: it is much larger than a Channel).
    Web(Box<WebLink>),
}

/// A grpc-web client and the server's URL it sends to.
#[derive(Clone)]
pub struct WebLink {
    /// The layered hyper client.
    channel: WebChannel,
    /// The server's URL.
    origin: Uri,
}

/// The connections a run's sessions share. Session `i` goes to server `i % servers`, over that
/// server's connection `(i / servers) / streams_per_connection`; connection `c` (counted over
/// every server) is bound to source address `c % len`.
pub struct Links {
    /// Per server, one per connection, created lazily (they connect on their first call).
    links: Vec<Vec<Link>>,
    /// Sessions per connection.
    per_link: usize,
}

impl Links {
    /// Enough connections for `sessions` sessions.
    pub fn new(common: &Common, sessions: usize) -> anyhow::Result<Self> {
        let per_link = common.streams_per_connection as usize;
        let servers = common.server.len();
        let mut links = Vec::with_capacity(servers);
        for (index, server) in common.server.iter().enumerate() {
            let sessions_here = sessions.saturating_sub(index).div_ceil(servers);
            let count = sessions_here.div_ceil(per_link).max(1);
            let first = links.iter().map(Vec::len).sum::<usize>();
            links.push(server_links(common, server, first, count)?);
        }
        Ok(Self { links, per_link })
    }

    /// The connection session `index` uses.
    pub fn for_session(&self, index: usize) -> Link {
        let server = &self.links[index % self.links.len()];
        let link = (index / self.links.len()) / self.per_link;
        server[link.min(server.len() - 1)].clone()
    }

    /// How many connections there are.
    pub fn len(&self) -> usize {
        self.links.iter().map(Vec::len).sum()
    }
}

/// `count` connections to `server`, the first of them the run's connection number `first`.
fn server_links(
    common: &Common,
    server: &str,
    first: usize,
    count: usize,
) -> anyhow::Result<Vec<Link>> {
    let per_link = common.streams_per_connection as usize;
    let origin: Uri = server.parse().context("--server is not a URL")?;
    let endpoint = Endpoint::from_shared(server.to_owned())
        .context("--server is not a URL")?
        .connect_timeout(common.timeout())
        // Many sessions share one connection's flow-control window: let it grow as a proxy's
        // would, so a busy connection is not held to the 64 KiB default.
        .http2_adaptive_window(true);
    let links = (first..first + count)
        .map(|index| {
            let connector = SourceConnector {
                source: common.source_ips[index % common.source_ips.len()],
            };
            match common.transport {
                Transport::Grpc => Link::Grpc(endpoint.connect_with_connector_lazy(connector)),
                Transport::GrpcWeb => {
                    let client = Client::builder(TokioExecutor::new())
                        .http2_only(per_link > 1)
                        .http2_adaptive_window(true)
                        .build(connector);
                    Link::Web(Box::new(WebLink {
                        channel: GrpcWebClientLayer::new().layer(client),
                        origin: origin.clone(),
                    }))
                }
            }
        })
        .collect();
    Ok(links)
}

/// Opens TCP connections (without Nagle) from the address `source`, leaving the choice of port
/// to the connect (`IP_BIND_ADDRESS_NO_PORT`). hyper's own connector binds the port first, which
/// reserves it for every destination: with the tens of thousands of connections of earlier runs
/// still in TIME_WAIT, the kernel's search for a free port took most of both cores and stalled
/// runs for seconds.
#[derive(Clone, Copy)]
pub struct SourceConnector {
    /// The local address every connection comes from.
    source: IpAddr,
}

impl tower::Service<Uri> for SourceConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let source = self.source;
        Box::pin(async move {
            let host = uri.host().unwrap_or("localhost").trim_matches(['[', ']']);
            let port = uri.port_u16().unwrap_or(80);
            let server = tokio::net::lookup_host((host, port))
                .await?
                .find(|addr| addr.is_ipv4() == source.is_ipv4())
                .ok_or_else(|| io::Error::other(format!("{host} has no address like {source}")))?;
            let socket = if source.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            setsockopt(&socket, IpBindAddressNoPort, &true)?;
            socket.bind(SocketAddr::new(source, 0))?;
            let stream = socket.connect(server).await?;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// One session, welcomed.
pub struct Session {
    /// The user it is signed in as.
    pub user_id: String,
    /// The user's bearer token (from the Welcome), to sign in again.
    pub token: String,
    /// The session's id (from the Welcome), which grpc-web receipts name.
    pub session_id: String,
    /// Messages that may go unacknowledged (from the Welcome); 0: the session has no receipts.
    pub receive_window: u32,
    /// Events from the server after the Welcome (and after the presence snapshot when asked to
    /// wait for it), read off the wire as they arrive; the channel closes when the stream ends.
    pub events: Events,
    /// How the session sends messages.
    pub outbox: Outbox,
    /// From the start of opening to the Welcome.
    pub welcomed_after: Duration,
    /// From the start of opening to the presence snapshot, when opened waiting for it.
    pub snapshot_after: Option<Duration>,
}

/// A session's events, read as soon as they arrive: a session whose events wait unread would
/// hold its connection's HTTP/2 flow-control window (stalling every other session on it) and fill
/// its queue on the server, which ends it as too slow.
pub type Events = mpsc::UnboundedReceiver<Result<ServerEvent, Status>>;

/// What opening a session waits for, and what it keeps of the events after.
#[derive(Debug, Clone, Copy)]
pub struct Opening {
    /// Wait for the presence snapshot after the Welcome.
    pub wait_snapshot: bool,
    /// Pass every event on to [`Session::events`]; when false they are read and dropped, and
    /// only a failure is passed on (the channel still closes when the stream ends).
    pub keep_events: bool,
    /// How long opening may take.
    pub timeout: Duration,
}

/// How a session sends messages.
#[derive(Clone)]
pub enum Outbox {
    /// Client events on the session's own Chat stream; acks come back on it.
    Grpc(mpsc::Sender<ClientEvent>),
    /// Unary SendMessage calls with the session's token; the answer is the ack (boxed: the
    /// client is much larger than a Sender).
    Web(Box<WebOutbox>),
}

/// What a grpc-web session sends with.
#[derive(Clone)]
pub struct WebOutbox {
    /// The client on the session's connection.
    client: ChatServiceClient<WebChannel>,
    /// The user's bearer token.
    token: String,
}

/// What became of a send.
pub enum Sent {
    /// Queued on a native stream: the ack (or an ErrorEvent) will come on the stream.
    Queued,
    /// Acked by a unary call.
    Acked,
}

impl Outbox {
    /// Sends a message; `timeout` bounds a unary call.
    pub async fn send(
        &mut self,
        message: SendMessageRequest,
        timeout: Duration,
    ) -> Result<Sent, Status> {
        match self {
            Outbox::Grpc(events) => {
                let event = ClientEvent {
                    event: Some(client_event::Event::SendMessage(message)),
                };
                events
                    .send(event)
                    .await
                    .map_err(|_| Status::cancelled("the Chat stream has ended"))?;
                Ok(Sent::Queued)
            }
            Outbox::Web(web) => {
                let request = bearer(&web.token, message)?;
                tokio::time::timeout(timeout, web.client.send_message(request))
                    .await
                    .map_err(|_| Status::deadline_exceeded("no answer to SendMessage in time"))??;
                Ok(Sent::Acked)
            }
        }
    }

    /// Tells the server that the session `session_id` has every message to its user up to
    /// `up_to_seq`: on the Chat stream, or by an Acknowledge call. `timeout` bounds either.
    pub async fn acknowledge(
        &mut self,
        session_id: &str,
        up_to_seq: u64,
        timeout: Duration,
    ) -> Result<(), Status> {
        let acknowledging = async {
            match self {
                Outbox::Grpc(events) => {
                    let event = ClientEvent {
                        event: Some(client_event::Event::Received(Received { up_to_seq })),
                    };
                    events
                        .send(event)
                        .await
                        .map_err(|_| Status::cancelled("the Chat stream has ended"))
                }
                Outbox::Web(web) => {
                    let request = AcknowledgeRequest {
                        session_id: session_id.to_owned(),
                        up_to_seq,
                    };
                    let request = bearer(&web.token, request)?;
                    web.client.acknowledge(request).await.map(|_| ())
                }
            }
        };
        tokio::time::timeout(timeout, acknowledging)
            .await
            .map_err(|_| Status::deadline_exceeded("the receipt was not taken in time"))?
    }
}

/// `message` with `authorization: Bearer <token>`.
fn bearer<T>(token: &str, message: T) -> Result<Request<T>, Status> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| Status::internal("the token is not a header value"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// Opens a session on `link` with `hello`: Chat for gRPC, Subscribe for grpc-web. Waits for the
/// Welcome and, when asked, for the presence snapshot after it.
pub async fn open(link: Link, hello: Hello, opening: Opening) -> Result<Session, Status> {
    let started = Instant::now();
    let welcomed = async {
        let (outbox, mut events) = match link {
            Link::Grpc(channel) => {
                let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
                tx.send(ClientEvent {
                    event: Some(client_event::Event::Hello(hello)),
                })
                .await
                .map_err(|_| Status::internal("outbox closed"))?;
                let events = ChatServiceClient::new(channel)
                    .chat(ReceiverStream::new(rx))
                    .await?
                    .into_inner();
                (Outbox::Grpc(tx), events)
            }
            Link::Web(web) => {
                let mut client = ChatServiceClient::with_origin(web.channel, web.origin);
                let request = SubscribeRequest { hello: Some(hello) };
                let events = client.subscribe(request).await?.into_inner();
                let outbox = Outbox::Web(Box::new(WebOutbox {
                    client,
                    token: String::new(),
                }));
                (outbox, events)
            }
        };
        let welcome = match next_event(&mut events).await? {
            Event::Welcome(welcome) => welcome,
            other => return Err(Status::internal(format!("first event {other:?}"))),
        };
        let welcomed_after = started.elapsed();
        let mut snapshot_after = None;
        if opening.wait_snapshot {
            while snapshot_after.is_none() {
                if let Event::Presence(_) = next_event(&mut events).await? {
                    snapshot_after = Some(started.elapsed());
                }
            }
        }
        let outbox = match outbox {
            Outbox::Web(mut web) => {
                web.token = welcome.token.clone();
                Outbox::Web(web)
            }
            grpc => grpc,
        };
        Ok(Session {
            user_id: welcome.user.map(|user| user.user_id).unwrap_or_default(),
            token: welcome.token,
            session_id: welcome.session_id,
            receive_window: welcome.receive_window,
            events: read_events(events, opening.keep_events),
            outbox,
            welcomed_after,
            snapshot_after,
        })
    };
    tokio::time::timeout(opening.timeout, welcomed)
        .await
        .map_err(|_| Status::deadline_exceeded("session not welcomed in time"))?
}

/// Reads `stream` until it ends or the returned receiver is dropped, passing events on (all of
/// them when `keep`, otherwise only a failure).
fn read_events(mut stream: Streaming<ServerEvent>, keep: bool) -> Events {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = tx.closed() => break,
                next = stream.message() => next,
            };
            match next {
                Ok(Some(event)) if keep => {
                    if tx.send(Ok(event)).is_err() {
                        break;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(status) => {
                    let _ = tx.send(Err(status));
                    break;
                }
            }
        }
    });
    rx
}

/// The next event of a session's stream; its end is an error here.
async fn next_event(events: &mut Streaming<ServerEvent>) -> Result<Event, Status> {
    events
        .message()
        .await?
        .and_then(|message| message.event)
        .ok_or_else(|| Status::unavailable("the stream ended"))
}

/// Opens an anonymous WatchPresence stream on `link` (of every user's presence, or only of the
/// directory page) and waits for its snapshot.
pub async fn watch_presence(
    link: Link,
    every_user: bool,
    timeout: Duration,
) -> Result<Streaming<PresenceEvent>, Status> {
    let request = WatchPresenceRequest { every_user };
    let watching = async {
        let mut events = match link {
            Link::Grpc(channel) => PresenceServiceClient::new(channel)
                .watch_presence(request)
                .await?
                .into_inner(),
            Link::Web(web) => PresenceServiceClient::with_origin(web.channel, web.origin)
                .watch_presence(request)
                .await?
                .into_inner(),
        };
        events
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("the stream ended before its snapshot"))?;
        Ok(events)
    };
    tokio::time::timeout(timeout, watching)
        .await
        .map_err(|_| Status::deadline_exceeded("no presence snapshot in time"))?
}

/// Sessions opened by [`open_all`], and how that went.
pub struct Opened {
    /// The sessions that opened, with the index each was asked for.
    pub sessions: Vec<(usize, Session)>,
    /// Why the others did not, by status code.
    pub errors: Errors,
    /// From the first attempt to the last answer.
    pub elapsed: Duration,
}

/// Opens `count` sessions, `concurrency` at once, session `i` with `hello(i)` over
/// `links.for_session(i)`.
pub async fn open_all(
    links: &Links,
    count: usize,
    concurrency: usize,
    opening: Opening,
    hello: impl Fn(usize) -> Hello,
) -> Opened {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for index in 0..count {
        let (link, hello, permits) = (links.for_session(index), hello(index), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (index, open(link, hello, opening).await)
        });
    }
    let mut opened = Opened {
        sessions: Vec::with_capacity(count),
        errors: Errors::default(),
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, Ok(session))) => opened.sessions.push((index, session)),
            Ok((_, Err(status))) => opened.errors.status(&status),
            Err(_) => opened.errors.add("TASK_FAILED"),
        }
    }
    opened.elapsed = started.elapsed();
    opened.sessions.sort_by_key(|(index, _)| *index);
    opened
}

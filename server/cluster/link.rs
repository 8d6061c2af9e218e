//! The link to NATS going down and coming back. While it is down this node keeps serving its own
//! users, drops what it would publish (PostgreSQL has it) and reports `fastchat.v1.Cluster`
//! NOT_SERVING on the gRPC health service; remote users keep the presence they had (see
//! [`super::presence`]). When it is back, the node says so on `{cluster}.link`, and every node
//! that hears it (and this one) has its chat sessions read back from the database what the
//! outage kept from them.

use std::sync::{Arc, Weak};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tonic_health::{ServingStatus, server::HealthReporter};

use super::Cluster;
use crate::{
    db::{Database, ids::Seq},
    metrics::Metrics,
};

/// The gRPC health service name that reports this node's link to the cluster.
pub const HEALTH_SERVICE: &str = "fastchat.v1.Cluster";

impl Cluster {
    /// Comebacks of a link, this node's or another's, for a chat session: each brings the highest
    /// seq committed once the link was back, up to which the session reads back what it lacks.
    pub fn link_back(&self) -> WatchStream<Seq> {
        WatchStream::from_changes(self.caught_up.subscribe())
    }

    /// Reports the link on health and metrics and acts on comebacks, until the cluster is gone.
    pub async fn start_link(
        self: &Arc<Self>,
        db: Database,
        health: HealthReporter,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<()> {
        let notices = self.client.subscribe(self.link_subject()).await?;
        let link = self.link.clone();
        tokio::spawn(run_link(
            Arc::downgrade(self),
            db,
            health,
            metrics,
            notices,
            link,
        ));
        Ok(())
    }

    fn link_subject(&self) -> String {
        format!("{}.link", self.name)
    }
}

async fn run_link(
    cluster: Weak<Cluster>,
    db: Database,
    health: HealthReporter,
    metrics: Arc<Metrics>,
    mut notices: async_nats::Subscriber,
    mut link: watch::Receiver<bool>,
) {
    let mut up = None;
    loop {
        let now_up = *link.borrow_and_update();
        let came_back = up == Some(false) && now_up;
        if up != Some(now_up) {
            up = Some(now_up);
            metrics.cluster_link(now_up);
            let status = if now_up {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status(HEALTH_SERVICE, status).await;
        }
        if came_back {
            let Some(cluster) = cluster.upgrade() else {
                return;
            };
            // The client subscribed anew on reconnecting; the flush's round trip has them in
            // place, so what commits after the seq read below comes live.
            if let Err(err) = cluster.client.flush().await {
                tracing::warn!(error = %err, "could not flush to NATS after reconnecting");
            }
            cluster.send(cluster.link_subject(), cluster.node.as_bytes().to_vec());
            read_back(&cluster, &db).await;
        }
        tokio::select! {
            changed = link.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            Some(_) = notices.next() => {
                // Another node's link is back: what it could not publish is in the database.
                let Some(cluster) = cluster.upgrade() else { return };
                read_back(&cluster, &db).await;
            }
        }
    }
}

/// Has every chat session here read back what it lacks, up to the highest seq committed now.
async fn read_back(cluster: &Cluster, db: &Database) {
    match db.last_seq().await {
        Ok(seq) => {
            tracing::info!(%seq, "cluster link back: sessions read back what they missed");
            cluster.caught_up.send_replace(seq);
        }
        Err(err) => {
            tracing::warn!(error = %err, "could not read the last seq after a link came back")
        }
    }
}

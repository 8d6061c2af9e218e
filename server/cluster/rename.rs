//! Renames across nodes. Each node caches who a token belongs to, display name included; a
//! rename on one node goes out on `{cluster}.rename` so the others' caches and registries follow
//! instead of bringing the old name back with the user's next call there.

use std::sync::{Arc, Weak};

use futures_util::StreamExt;
use prost::Message as _;

use super::Cluster;
use crate::{App, db::ids::UserId};

/// A user's new display name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Rename {
    #[prost(string, tag = "1")]
    pub user_id: String,
    #[prost(string, tag = "2")]
    pub display_name: String,
}

impl Cluster {
    /// Tells the other nodes that `user` is now called `display_name`.
    pub fn share_rename(&self, user: UserId, display_name: &str) {
        let rename = Rename {
            user_id: user.to_string(),
            display_name: display_name.to_owned(),
        };
        self.send(self.rename_subject(), rename.encode_to_vec());
    }

    /// Applies the other nodes' renames to `app`'s identity cache and hub, until either is gone.
    pub async fn start_renames(self: &Arc<Self>, app: Weak<App>) -> anyhow::Result<()> {
        let mut renames = self.client.subscribe(self.rename_subject()).await?;
        tokio::spawn(async move {
            while let Some(message) = renames.next().await {
                let Some(app) = app.upgrade() else { return };
                let Ok(rename) = Rename::decode(message.payload) else {
                    tracing::warn!("undecodable rename");
                    continue;
                };
                let Ok(id) = rename.user_id.parse().map(UserId) else {
                    continue;
                };
                app.identity.renamed_elsewhere(id, &rename.display_name);
                app.hub.rename(id, &rename.display_name);
            }
        });
        Ok(())
    }

    fn rename_subject(&self) -> String {
        format!("{}.rename", self.name)
    }
}

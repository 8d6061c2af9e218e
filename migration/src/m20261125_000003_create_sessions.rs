use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261125_000001_create_users::user_foreign_key;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    NodeId,
    Transport,
    Away,
    ConnectedAt,
    LastActiveAt,
    EndedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(pk_uuid(Sessions::Id))
                    .col(uuid(Sessions::UserId))
                    .col(string(Sessions::NodeId))
                    .col(string(Sessions::Transport))
                    .col(boolean(Sessions::Away).default(false))
                    .col(timestamp_with_time_zone(Sessions::ConnectedAt))
                    .col(timestamp_with_time_zone(Sessions::LastActiveAt))
                    .col(timestamp_with_time_zone_null(Sessions::EndedAt))
                    .foreign_key(&mut user_foreign_key(
                        "fk_sessions_user_id",
                        Sessions::Table,
                        Sessions::UserId,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_user_id")
                    .table(Sessions::Table)
                    .col(Sessions::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_node_id_ended_at")
                    .table(Sessions::Table)
                    .col(Sessions::NodeId)
                    .col(Sessions::EndedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Sessions::Table).to_owned())
            .await
    }
}

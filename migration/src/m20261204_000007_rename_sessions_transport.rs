//! `sessions.transport` has always held the session's kind (`chat` or `presence`), never its
//! transport: renamed `kind`. SQLite renames columns since 3.25.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Transport,
    Kind,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rename(manager, Sessions::Transport, Sessions::Kind).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rename(manager, Sessions::Kind, Sessions::Transport).await
    }
}

async fn rename(manager: &SchemaManager<'_>, from: Sessions, to: Sessions) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(Sessions::Table)
                .rename_column(from, to)
                .to_owned(),
        )
        .await
}

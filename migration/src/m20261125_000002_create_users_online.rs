use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261125_000001_create_users::user_foreign_key;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UsersOnline {
    Table,
    UserId,
    Status,
    Sessions,
    LastSeen,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsersOnline::Table)
                    .col(pk_uuid(UsersOnline::UserId))
                    .col(string(UsersOnline::Status))
                    .col(integer(UsersOnline::Sessions).default(0))
                    .col(timestamp_with_time_zone(UsersOnline::LastSeen))
                    .col(timestamp_with_time_zone(UsersOnline::UpdatedAt))
                    .foreign_key(&mut user_foreign_key(
                        "fk_users_online_user_id",
                        UsersOnline::Table,
                        UsersOnline::UserId,
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UsersOnline::Table).to_owned())
            .await
    }
}

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261125_000001_create_users::user_foreign_key;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ReadMarks {
    Table,
    ReaderId,
    PeerId,
    ReadUpToSeq,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ReadMarks::Table)
                    .col(uuid(ReadMarks::ReaderId))
                    .col(uuid(ReadMarks::PeerId))
                    .col(big_integer(ReadMarks::ReadUpToSeq).default(0))
                    .col(timestamp_with_time_zone(ReadMarks::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .name("pk_read_marks")
                            .col(ReadMarks::ReaderId)
                            .col(ReadMarks::PeerId),
                    )
                    .foreign_key(&mut user_foreign_key(
                        "fk_read_marks_reader_id",
                        ReadMarks::Table,
                        ReadMarks::ReaderId,
                    ))
                    .foreign_key(&mut user_foreign_key(
                        "fk_read_marks_peer_id",
                        ReadMarks::Table,
                        ReadMarks::PeerId,
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ReadMarks::Table).to_owned())
            .await
    }
}

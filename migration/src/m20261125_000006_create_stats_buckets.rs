use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum StatsBuckets {
    Table,
    Kind,
    BucketStart,
    Connections,
    Messages,
    Errors,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StatsBuckets::Table)
                    // `hour` or `day`.
                    .col(string(StatsBuckets::Kind))
                    .col(timestamp_with_time_zone(StatsBuckets::BucketStart))
                    .col(big_integer(StatsBuckets::Connections).default(0))
                    .col(big_integer(StatsBuckets::Messages).default(0))
                    .col(big_integer(StatsBuckets::Errors).default(0))
                    .primary_key(
                        Index::create()
                            .name("pk_stats_buckets")
                            .col(StatsBuckets::Kind)
                            .col(StatsBuckets::BucketStart),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(StatsBuckets::Table).to_owned())
            .await
    }
}

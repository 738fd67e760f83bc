//! The knowledge base: uploaded documents, their chunks with embedding vectors, each org's memory
//! text, and a per-org index generation that every change bumps in the same transaction, so each
//! node can tell when its in-memory search index is out of date.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn org_fk(table: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, "org_id")
        .to("organizations", "id")
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("kb_documents")
                    .col(uuid("id").primary_key())
                    .col(uuid("org_id"))
                    .col(uuid("user_id"))
                    .col(string_len("title", 300))
                    .col(string_len("filename", 300))
                    .col(string_len("content_type", 100))
                    .col(big_integer("size_bytes"))
                    .col(string_len("object_key", 700))
                    // uploading -> processing -> ready | failed
                    .col(string_len("status", 16))
                    .col(text_null("error"))
                    .col(integer("chunks_done"))
                    .col(integer("chunks_total"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(&mut org_fk("kb_documents"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("kb_documents", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("kb_documents_org_idx")
                    .table("kb_documents")
                    .col("org_id")
                    .col("created_at")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("kb_documents_status_idx")
                    .table("kb_documents")
                    .col("status")
                    .col("updated_at")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("kb_chunks")
                    .col(uuid("id").primary_key())
                    .col(uuid("org_id"))
                    .col(uuid("document_id"))
                    .col(integer("ordinal"))
                    .col(text("content"))
                    // 384 little-endian f32s.
                    .col(blob("embedding"))
                    .foreign_key(&mut org_fk("kb_chunks"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("kb_chunks", "document_id")
                            .to("kb_documents", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("kb_chunks_document_idx")
                    .table("kb_chunks")
                    .col("document_id")
                    .col("ordinal")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("kb_chunks_org_idx")
                    .table("kb_chunks")
                    .col("org_id")
                    // With the id, a search's `org_id = ? AND id IN (...)` is ten index
                    // lookups: SQLite, without statistics, otherwise scans the whole org.
                    .col("id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("kb_memory")
                    .col(uuid("org_id").primary_key())
                    .col(text("content"))
                    .col(uuid_null("updated_by"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(&mut org_fk("kb_memory"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("kb_index_versions")
                    .col(uuid("org_id").primary_key())
                    .col(big_integer("generation"))
                    .foreign_key(&mut org_fk("kb_index_versions"))
                    .to_owned(),
            )
            .await?;
        for table in [
            "kb_documents",
            "kb_chunks",
            "kb_memory",
            "kb_index_versions",
        ] {
            super::enable_rls(manager, table, "org_id").await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "kb_index_versions",
            "kb_memory",
            "kb_chunks",
            "kb_documents",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

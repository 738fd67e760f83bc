//! A transaction on a SQLite connection that its owner keeps checked out of the pool, usable
//! wherever sea-orm takes a connection ([`ConnectionTrait`]).
//!
//! Why: the turn writer commits a batch every millisecond or two under load. Through sea-orm,
//! every batch checks the pool's one SQLite connection out and back in, and sqlx returns a
//! connection from a spawned task that first pings it through the connection's thread: the
//! next checkout waits for both, about a fifth of a batch's time. The writer instead keeps the
//! connection while batches keep coming (see `turns.rs` for how long) and opens its
//! transactions here. sqlx's own transaction underneath rolls back if one is dropped unended.

use sea_orm::sqlx::{self, Sqlite, SqliteConnection};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Mutex;

/// An open transaction on a borrowed SQLite connection.
pub(crate) struct SqliteTx<'c> {
    // sea-orm's connection methods take `&self`; the lock is never contended (one owner).
    tx: Mutex<sqlx::Transaction<'c, Sqlite>>,
}

fn runtime(e: sqlx::Error) -> RuntimeErr {
    RuntimeErr::SqlxError(e.into())
}

/// The statement as sqlx runs it: prepared and kept in the connection's statement cache.
fn query(stmt: &Statement) -> sqlx::query::Query<'_, Sqlite, SqlxValues> {
    let values = stmt
        .values
        .clone()
        .unwrap_or(sea_orm::sea_query::Values(Vec::new()));
    sqlx::query_with(sqlx::AssertSqlSafe(stmt.sql.as_str()), SqlxValues(values))
}

impl<'c> SqliteTx<'c> {
    pub(crate) async fn begin(conn: &'c mut SqliteConnection) -> Result<SqliteTx<'c>, DbErr> {
        use sqlx::Connection;
        let tx = conn.begin().await.map_err(|e| DbErr::Conn(runtime(e)))?;
        Ok(SqliteTx { tx: Mutex::new(tx) })
    }

    pub(crate) async fn commit(self) -> Result<(), DbErr> {
        self.tx
            .into_inner()
            .commit()
            .await
            .map_err(|e| DbErr::Exec(runtime(e)))
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for SqliteTx<'_> {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Sqlite
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let mut tx = self.tx.lock().await;
        query(&stmt)
            .execute(&mut **tx)
            .await
            .map(Into::into)
            .map_err(|e| DbErr::Exec(runtime(e)))
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        use sqlx::Executor;
        let mut tx = self.tx.lock().await;
        (&mut **tx)
            .execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)))
            .await
            .map(Into::into)
            .map_err(|e| DbErr::Exec(runtime(e)))
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let mut tx = self.tx.lock().await;
        query(&stmt)
            .fetch_optional(&mut **tx)
            .await
            .map(|row| row.map(Into::into))
            .map_err(|e| DbErr::Query(runtime(e)))
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut tx = self.tx.lock().await;
        query(&stmt)
            .fetch_all(&mut **tx)
            .await
            .map(|rows| rows.into_iter().map(Into::into).collect())
            .map_err(|e| DbErr::Query(runtime(e)))
    }
}

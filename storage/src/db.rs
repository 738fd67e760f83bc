//! The relational store: connection pool, migrations, and the two kinds of transaction the
//! repository layer is allowed to use.
//!
//! Every query of application data runs inside an [`OrgTx`] (one org's rows) or a [`SystemTx`]
//! (cross-org work: login, token lookup, registration, admin CLI). On PostgreSQL both switch to
//! the non-login RLS role for the transaction, so row-level security applies even when the pool
//! connects as a superuser; an `OrgTx` also sets `aurora.org_id`, which the policies compare to each
//! row's org. On SQLite, which has no row-level security, [`OrgTx::select`] and the repository
//! functions add the org filter themselves.

use std::time::Duration;

use aurora_config::DatabaseConfig;
use sea_orm::sea_query::{Expr, ExprTrait, PostgresQueryBuilder, SelectStatement};
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, QueryFilter, QueryResult, RuntimeErr, Select, Statement,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use uuid::Uuid;

use crate::entities::{OrgScoped, ORG_SCOPED_TABLES};
use crate::migration::Migrator;
use crate::StorageError;

/// Key of the PostgreSQL advisory lock held while migrating, so nodes starting together take turns.
const MIGRATION_LOCK_KEY: i64 = 0x6175_726f_7261; // "aurora"

/// The node's relational store.
#[derive(Clone, Debug)]
pub struct Db {
    conn: DatabaseConnection,
    rls_role: String,
    /// PostgreSQL only: a second pool used solely by [`Db::org_query`] and [`Db::system_query`].
    /// Its connections run as the RLS role for their whole life, so a read needs no transaction
    /// (see `read_postgres`). Kept apart so no other code ever sees a connection in that state.
    reads: Option<sea_orm::sqlx::PgPool>,
    /// SQLite on a file only: read-only connections for the same two methods. With WAL a reader
    /// sees every committed write and never waits for the writer, which otherwise holds the
    /// one read-write connection for whole batches of turns.
    sqlite_reads: Option<DatabaseConnection>,
}

/// Read-only SQLite connections (hot reads: a session's context, lists, token lookups).
const SQLITE_READERS: u32 = 4;

impl Db {
    /// Opens the pool. SQLite files are created when missing and switched to WAL so readers never
    /// wait on the writer.
    pub async fn connect(
        config: &DatabaseConfig,
        max_connections: u32,
        rls_role: &str,
    ) -> Result<Db, StorageError> {
        let mut opts = ConnectOptions::new(config.url().to_string());
        // SQLite has one writer: a transaction that starts reading and then writes fails at
        // once with SQLITE_BUSY when another connection wrote meanwhile (busy_timeout does not
        // apply to that upgrade), which lost turns under concurrency. One connection queues
        // every transaction instead.
        let max_connections = match config {
            DatabaseConfig::Sqlite { .. } => 1,
            DatabaseConfig::Postgres { .. } => max_connections,
        };
        // No ping before every checkout: it is a round trip per transaction (sqlx already pings
        // each connection as it goes back to the pool). SQLite's connection is a thread of
        // this process; a PostgreSQL connection is tested once it has sat idle long enough
        // for a server or proxy to have dropped it.
        match config {
            DatabaseConfig::Sqlite { .. } => opts.test_before_acquire(false),
            DatabaseConfig::Postgres { .. } => {
                opts.test_before_acquire_if_idle_for(Duration::from_secs(30))
            }
        };
        opts.max_connections(max_connections)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| {
                // A batch of turns inserts as many rows as it has, so each batch size is its own
                // statement: room for all of them, or SQLite compiles them again and again.
                o.journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    .statement_cache_capacity(1024)
            });
        let conn = Database::connect(opts).await?;
        let reads = match config {
            DatabaseConfig::Postgres { url } => {
                Some(read_pool(url.expose(), max_connections, rls_role)?)
            }
            DatabaseConfig::Sqlite { .. } => None,
        };
        let sqlite_reads = match config {
            // An in-memory database exists only on its own connection.
            DatabaseConfig::Sqlite { url } if !url.contains("memory") => {
                Some(sqlite_read_pool(url).await?)
            }
            _ => None,
        };
        Ok(Db {
            reads,
            sqlite_reads,
            conn,
            rls_role: rls_role.to_string(),
        })
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// The raw pool, for migrations, health pings and tests. Application queries go through
    /// [`Db::org`] or [`Db::system`].
    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Applies pending migrations. On PostgreSQL this holds an advisory lock for the duration, and
    /// then (re)grants the RLS role its privileges.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        match self.backend() {
            DbBackend::Postgres => {
                // Session-level advisory locks belong to one connection: take a transaction so
                // the lock, the migrations and the grants all run on it.
                let txn = self.conn.begin().await?;
                txn.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_advisory_xact_lock($1)",
                    [MIGRATION_LOCK_KEY.into()],
                ))
                .await?;
                Migrator::up(&txn, None).await?;
                self.grant_rls_role(&txn).await?;
                txn.commit().await?;
            }
            _ => Migrator::up(&self.conn, None).await?,
        }
        Ok(())
    }

    /// Creates the non-login RLS role when missing and grants it what the application needs.
    async fn grant_rls_role(&self, txn: &DatabaseTransaction) -> Result<(), StorageError> {
        let role = &self.rls_role; // validated by the config as [A-Za-z0-9_]+
        let sql = format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                 CREATE ROLE {role} NOLOGIN NOBYPASSRLS;
               END IF;
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$;
             DO $$ BEGIN
               IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
                 EXECUTE format('GRANT {role} TO %I', current_user);
               END IF;
             END $$;
             GRANT USAGE ON SCHEMA public TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};"
        );
        txn.execute_unprepared(&sql).await?;
        for (table, _) in ORG_SCOPED_TABLES {
            let row = txn
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    format!(
                        "SELECT relrowsecurity AND relforcerowsecurity AS ok FROM pg_class \
                         WHERE oid = 'public.{table}'::regclass"
                    ),
                ))
                .await?;
            let ok: bool = row
                .map(|r| r.try_get("", "ok"))
                .transpose()?
                .unwrap_or(false);
            if !ok {
                return Err(StorageError::Schema(format!(
                    "table {table} does not have forced row-level security"
                )));
            }
        }
        Ok(())
    }

    /// A cheap round trip, for health checks.
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.conn.ping().await?;
        Ok(())
    }

    /// Begins a transaction that sees and writes only `org_id`'s rows.
    pub async fn org(&self, org_id: Uuid) -> Result<OrgTx, StorageError> {
        let txn = self.conn.begin().await?;
        if self.backend() == DbBackend::Postgres {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT set_config('role', $1, true), set_config('aurora.org_id', $2, true)",
                [self.rls_role.clone().into(), org_id.to_string().into()],
            ))
            .await?;
        }
        Ok(OrgTx { txn, org_id })
    }

    /// Runs one read-only `SELECT` in `org_id`'s row-level-security context.
    ///
    /// Reads are most of the traffic, so on PostgreSQL this takes two round trips on the read
    /// pool instead of the four of BEGIN / set_config / SELECT / COMMIT. The caller still adds
    /// the org filter ([`org_select`]), so SQLite, which runs the query as it is, stays scoped.
    pub async fn org_query(
        &self,
        org_id: Uuid,
        stmt: &SelectStatement,
    ) -> Result<Vec<QueryResult>, StorageError> {
        match self.backend() {
            DbBackend::Postgres => self.read_postgres(Some(org_id), stmt).await,
            _ => Ok(self.sqlite_reader().query_all(stmt).await?),
        }
    }

    /// Like [`Db::org_query`], in the system context (cross-org reads: token lookup).
    pub async fn system_query(
        &self,
        stmt: &SelectStatement,
    ) -> Result<Vec<QueryResult>, StorageError> {
        match self.backend() {
            DbBackend::Postgres => self.read_postgres(None, stmt).await,
            _ => Ok(self.sqlite_reader().query_all(stmt).await?),
        }
    }

    fn sqlite_reader(&self) -> &DatabaseConnection {
        self.sqlite_reads.as_ref().unwrap_or(&self.conn)
    }

    /// One read in two round trips and no transaction, on the read pool (whose connections are
    /// the RLS role for life): first a prepared statement that sets *both* context settings at
    /// session level, so whatever the previous read on this connection left is overwritten and
    /// never inherited; then the query, also prepared and cached, with bound values and binary
    /// results. `org` is the org to see, or `None` for the system context.
    async fn read_postgres(
        &self,
        org: Option<Uuid>,
        stmt: &SelectStatement,
    ) -> Result<Vec<QueryResult>, StorageError> {
        use sea_orm::sqlx;
        use sea_query_sqlx::SqlxBinder;
        let pool = self
            .reads
            .as_ref()
            .ok_or_else(|| StorageError::Internal("no read pool".into()))?;
        let sqlx_err =
            |e: sqlx::Error| StorageError::Db(DbErr::Query(RuntimeErr::SqlxError(e.into())));
        let (sql, values) = stmt.build_sqlx(PostgresQueryBuilder);
        let mut conn = pool.acquire().await.map_err(sqlx_err)?;
        sqlx::query(
            "SELECT set_config('aurora.org_id', $1, false), set_config('aurora.system', $2, false)",
        )
        .bind(org.map(|o| o.to_string()).unwrap_or_default())
        .bind(if org.is_some() { "off" } else { "on" })
        .execute(&mut *conn)
        .await
        .map_err(sqlx_err)?;
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), values)
            .fetch_all(&mut *conn)
            .await
            .map_err(sqlx_err)?;
        Ok(rows.into_iter().map(QueryResult::from).collect())
    }

    /// Begins a transaction for cross-org work (authentication, registration, administration).
    pub async fn system(&self) -> Result<SystemTx, StorageError> {
        let txn = self.conn.begin().await?;
        if self.backend() == DbBackend::Postgres {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT set_config('role', $1, true), set_config('aurora.system', 'on', true)",
                [self.rls_role.clone().into()],
            ))
            .await?;
        }
        Ok(SystemTx { txn })
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(self) -> Result<(), StorageError> {
        if let Some(reads) = &self.reads {
            reads.close().await;
        }
        if let Some(reads) = self.sqlite_reads {
            reads.close().await?;
        }
        self.conn.close().await?;
        Ok(())
    }
}

/// SQLite's read-only pool. Opened after the read-write pool, which creates the file and turns
/// on WAL (a setting of the file, which these connections then use).
async fn sqlite_read_pool(url: &str) -> Result<DatabaseConnection, StorageError> {
    let mut opts = ConnectOptions::new(url.to_string());
    opts.max_connections(SQLITE_READERS)
        .min_connections(0)
        .test_before_acquire(false)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.read_only(true)
                .busy_timeout(Duration::from_secs(10))
                .statement_cache_capacity(256)
        });
    Ok(Database::connect(opts).await?)
}

/// The read pool: lazy, so its first connection opens after migrations created the RLS role;
/// every connection switches to that role for good as it opens.
fn read_pool(
    url: &str,
    max_connections: u32,
    rls_role: &str,
) -> Result<sea_orm::sqlx::PgPool, StorageError> {
    use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use sea_orm::sqlx::{self, Executor};
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| StorageError::Db(DbErr::Conn(RuntimeErr::SqlxError(e.into()))))?;
    let set_role = format!("SET ROLE {rls_role}");
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(move |conn, _meta| {
            let set_role = set_role.clone();
            Box::pin(async move {
                conn.execute(sqlx::AssertSqlSafe(set_role)).await?;
                Ok(())
            })
        })
        .connect_lazy_with(options))
}

/// `SELECT` of an org-scoped entity filtered to `org_id`: the only way the repository layer
/// starts a query of org data.
pub fn org_select<E: OrgScoped>(org_id: Uuid) -> Select<E> {
    E::find().filter(E::org_column().eq(org_id))
}

/// A transaction scoped to one organization. Dropped without [`OrgTx::commit`], it rolls back.
pub struct OrgTx {
    txn: DatabaseTransaction,
    org_id: Uuid,
}

impl OrgTx {
    pub fn org_id(&self) -> Uuid {
        self.org_id
    }

    /// Goes on in the same transaction as `org_id`: what follows sees and writes only its rows.
    /// For writers that batch several orgs' work into one commit and still want the database
    /// to refuse a row of the wrong org.
    pub(crate) async fn switch_org(&mut self, org_id: Uuid) -> Result<(), StorageError> {
        if self.org_id == org_id {
            return Ok(());
        }
        if self.txn.get_database_backend() == DbBackend::Postgres {
            self.txn
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT set_config('aurora.org_id', $1, true)",
                    [org_id.to_string().into()],
                ))
                .await?;
        }
        self.org_id = org_id;
        Ok(())
    }

    /// The transaction, for executing statements built by [`OrgTx::select`] or raw SQL.
    pub fn conn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// `SELECT` of an org-scoped entity, already filtered to this org (on every backend: on
    /// PostgreSQL the filter also lets the planner use the org indexes).
    pub fn select<E: OrgScoped>(&self) -> Select<E> {
        org_select(self.org_id)
    }

    /// The filter to add to an `UPDATE` or `DELETE` of an org-scoped entity.
    pub fn org_filter<E: OrgScoped>(&self) -> sea_orm::sea_query::SimpleExpr {
        Expr::col(E::org_column()).eq(self.org_id)
    }

    pub async fn commit(self) -> Result<(), StorageError> {
        self.txn.commit().await?;
        Ok(())
    }
}

/// A transaction allowed to see every org's rows. Only authentication, registration and the
/// admin CLI use it.
pub struct SystemTx {
    txn: DatabaseTransaction,
}

impl SystemTx {
    pub fn conn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    pub async fn commit(self) -> Result<(), StorageError> {
        self.txn.commit().await?;
        Ok(())
    }
}

/// Makes transactions that change one org's membership or quotas take turns on PostgreSQL:
/// the org's row is locked to the end of the transaction, so two of them cannot both pass a
/// count made before either wrote. SQLite has one writer already.
pub(crate) async fn lock_org(
    conn: &impl sea_orm::ConnectionTrait,
    org_id: Uuid,
) -> Result<(), StorageError> {
    use sea_orm::{DbBackend, Statement};
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id FROM organizations WHERE id = $1 FOR UPDATE",
            [org_id.into()],
        ))
        .await?;
    }
    Ok(())
}

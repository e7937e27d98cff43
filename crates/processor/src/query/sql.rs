//! SQL over the PostgreSQL wire protocol: DataFusion plans and runs the queries (joins,
//! aggregates, filters, ORDER BY, LIMIT), `datafusion-postgres` speaks pgwire and emulates the
//! `pg_catalog` that psql's `\d` commands read, and each table is a snapshot of the [`Store`]
//! taken when a query scans it.
//!
//! Errors reach the client as PostgreSQL errors with a SQLSTATE (42601 syntax, 42P01 unknown
//! table, 42703 unknown column, 53200 out of memory, ...); the connection stays open. Every
//! query shares one memory pool (`--sql-memory-limit-mb`): a sort, join or aggregate that
//! needs more fails with 53200 instead of exhausting the process.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use async_trait::async_trait;
use datafusion::{
    arrow::datatypes::SchemaRef,
    catalog::{Session, TableProvider},
    datasource::{MemTable, TableType},
    error::{DataFusionError, Result as DfResult},
    execution::runtime_env::RuntimeEnvBuilder,
    logical_expr::Expr,
    physical_plan::ExecutionPlan,
    prelude::{SessionConfig, SessionContext},
};
use datafusion_postgres::{
    DfSessionService,
    datafusion_pg_catalog::{pg_catalog::context::EmptyContextProvider, setup_pg_catalog},
    pgwire::{
        api::{
            ClientInfo, ConnectionManager, ErrorHandler, PgWireServerHandlers,
            auth::{StartupHandler, noop::NoopStartupHandler},
            cancel::{CancelHandler, DefaultCancelHandler},
            query::{ExtendedQueryHandler, SimpleQueryHandler},
        },
        error::{ErrorInfo, PgWireError},
    },
};

use super::{
    store::Store,
    table::{self, TABLES, TableDef},
};
use crate::error::ProcessorError;

/// One SQL table: the current rows of the store, as one in-memory batch per scan.
struct View {
    def: &'static TableDef,
    schema: SchemaRef,
    store: Arc<RwLock<Store>>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "View({})", self.def.name)
    }
}

#[async_trait]
impl TableProvider for View {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rows = self
            .store
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .rows(self.def.id)
            .map_err(DataFusionError::Execution)?;
        let batch = table::batch(self.def, &rows)?;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// The session every connection shares: the tables, `pg_catalog`, PostgreSQL functions and
/// the memory pool.
pub fn session(store: Arc<RwLock<Store>>, memory_limit_bytes: usize) -> DfResult<SessionContext> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(memory_limit_bytes, 1.0)
        .build_arc()?;
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("datafusion", "public");
    let mut ctx = SessionContext::new_with_config_rt(config, runtime);
    for def in TABLES {
        ctx.register_table(
            def.name,
            Arc::new(View {
                def,
                schema: table::schema(def),
                store: store.clone(),
            }),
        )?;
    }
    setup_pg_catalog(&ctx, "datafusion", EmptyContextProvider).map_err(|e| *e)?;
    datafusion_postgres::datafusion_pg_functions::register_all(&mut ctx);
    Ok(ctx)
}

struct Startup {
    connections: Arc<ConnectionManager>,
}

impl NoopStartupHandler for Startup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }
}

/// Turns an engine error into a PostgreSQL error with the SQLSTATE a client expects.
struct SqlStateErrors;

impl ErrorHandler for SqlStateErrors {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        if let PgWireError::ApiError(inner) = error {
            let (code, message) = match inner.downcast_ref::<DataFusionError>() {
                Some(e) => (sqlstate(e), e.find_root().to_string()),
                None => ("42601", inner.to_string()),
            };
            metrics::counter!("processor_sql_errors_total", "sqlstate" => code).increment(1);
            *error = PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                code.into(),
                message,
            )));
        }
    }
}

/// The SQLSTATE of a DataFusion error.
pub fn sqlstate(error: &DataFusionError) -> &'static str {
    use datafusion::common::SchemaError;
    match error.find_root() {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::SchemaError(e, _) => match **e {
            SchemaError::FieldNotFound { .. } => "42703",
            SchemaError::AmbiguousReference { .. } => "42702",
            _ => "42P18",
        },
        DataFusionError::Plan(message) if message.contains("not found") => {
            if message.contains("table") {
                "42P01"
            } else {
                "42883"
            }
        }
        DataFusionError::Plan(_) => "42000",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::ArrowError(..) => "22000",
        DataFusionError::Execution(message) if message.contains("cannot be read") => "55000",
        DataFusionError::Execution(message) if message.contains("Divide by zero") => "22012",
        _ => "XX000",
    }
}

struct Handlers {
    service: Arc<DfSessionService>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(SqlStateErrors)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// Binds `listen` now (an address in use is a start-up error naming it) and serves SQL in the
/// background.
pub async fn serve(
    listen: SocketAddr,
    store: Arc<RwLock<Store>>,
    memory_limit_bytes: usize,
) -> Result<(), ProcessorError> {
    let ctx = session(store, memory_limit_bytes)
        .map_err(|e| ProcessorError::Startup(format!("setting up the SQL engine: {e}")))?;
    let listener = platform::telemetry::listen_on(listen)
        .map_err(|e| ProcessorError::Startup(format!("cannot listen for SQL on {listen}: {e}")))?;
    let connections = Arc::new(ConnectionManager::new());
    let handlers = Arc::new(Handlers {
        service: Arc::new(DfSessionService::new(Arc::new(ctx))),
        startup: Arc::new(Startup {
            connections: connections.clone(),
        }),
        cancel: Arc::new(DefaultCancelHandler::new(connections)),
    });
    tracing::info!(%listen, "serving SQL over the PostgreSQL protocol");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((socket, peer)) => {
                    let handlers = handlers.clone();
                    tokio::spawn(async move {
                        metrics::counter!("processor_sql_connections_total").increment(1);
                        if let Err(error) = datafusion_postgres::pgwire::tokio::process_socket(
                            socket, None, handlers,
                        )
                        .await
                        {
                            tracing::debug!(%peer, %error, "SQL connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a SQL connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{store::Store, table::Cell};

    async fn error_of(ctx: &SessionContext, sql: &str) -> &'static str {
        let result = match ctx.sql(sql).await {
            Ok(df) => df.collect().await.map(drop),
            Err(e) => Err(e),
        };
        sqlstate(&result.expect_err(sql))
    }

    #[tokio::test]
    async fn errors_carry_the_sqlstate_a_postgresql_client_expects() {
        let store = Arc::new(RwLock::new(Store::default()));
        store.write().unwrap().break_table(
            table::TableId::Users,
            "k".into(),
            "topic_user_state[0]@7: bad".into(),
        );
        let ctx = session(store, 64 << 20).unwrap();
        assert_eq!(error_of(&ctx, "SELEC 1").await, "42601");
        assert_eq!(error_of(&ctx, "SELECT * FROM no_such_table").await, "42P01");
        assert_eq!(
            error_of(&ctx, "SELECT no_such_column FROM bookings").await,
            "42703"
        );
        assert_eq!(error_of(&ctx, "SELECT * FROM users").await, "55000");
    }

    #[tokio::test]
    async fn a_query_needing_more_than_the_memory_pool_fails_with_53200() {
        let mut store = Store::default();
        for i in 0..200_000i64 {
            store.put_state(
                table::TableId::Users,
                format!("public.users/{i}"),
                Some(vec![
                    Cell::Int(i),
                    Cell::Text(format!("external-{i}")),
                    Cell::Text(format!("user{i}@example.vn")),
                ]),
            );
        }
        let ctx = session(Arc::new(RwLock::new(store)), 16 << 20).unwrap();
        assert_eq!(
            error_of(
                &ctx,
                "SELECT a.email, b.email FROM users a JOIN users b ON a.user_id <> b.user_id ORDER BY 1, 2"
            )
            .await,
            "53200"
        );
        // Within the pool the same engine answers.
        let df = ctx.sql("SELECT count(*) FROM users").await.unwrap();
        assert_eq!(df.collect().await.unwrap()[0].num_rows(), 1);
    }
}

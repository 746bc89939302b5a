//! Throwaway PostgreSQL databases for tests: one per test, created on the server that
//! `ROOKERY_TEST_POSTGRES` names and dropped afterwards, even when the test fails.

use super::PostgresStorage;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub(crate) struct TestDb {
    server: PgConnectOptions,
    name: String,
}

impl TestDb {
    /// A new empty database, or None (after a notice) when `ROOKERY_SKIP_POSTGRES=1`. Panics
    /// when the server cannot be reached: a silently skipped backend would pass for a tested one.
    pub(crate) async fn create() -> Option<TestDb> {
        if std::env::var("ROOKERY_SKIP_POSTGRES").as_deref() == Ok("1") {
            eprintln!("ROOKERY_SKIP_POSTGRES=1: PostgreSQL storage tests skipped");
            return None;
        }
        let url =
            std::env::var("ROOKERY_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_SERVER.to_string());
        let server = PgConnectOptions::from_str(&url)
            .unwrap_or_else(|e| panic!("ROOKERY_TEST_POSTGRES={url}: {e}"));
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "rookery_test_{}_{}_{:08x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let mut admin = tokio::time::timeout(Duration::from_secs(10), server.connect())
            .await
            .map_err(|_| "timed out".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {url} is unreachable ({e}). Start it (./scripts/test does), \
                     point ROOKERY_TEST_POSTGRES at a server, or set ROOKERY_SKIP_POSTGRES=1"
                )
            });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {url}: {e}"));
        let _ = admin.close().await;
        Some(TestDb { server, name })
    }

    pub(crate) fn options(&self) -> PgConnectOptions {
        self.server.clone().database(&self.name)
    }

    pub(crate) async fn open(&self) -> PostgresStorage {
        PostgresStorage::connect(self.options(), 4)
            .await
            .expect("opening the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime (or while unwinding from a failed assertion),
        // where nothing can be awaited: a thread of its own with its own runtime does it.
        let server = self.server.clone();
        let name = self.name.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut admin = server.connect().await?;
                // FORCE ends the pool's connections, which may outlive the storage value.
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await?;
                admin.close().await
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {done:?}", self.name);
        }
    }
}

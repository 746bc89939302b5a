//! Storage backends behind the `rookery_core::storage` contracts, chosen by URL.

mod copy;
mod memory;
mod postgres;
mod sql;
mod sql_upload;
mod sqlite;

pub use copy::{copy, is_empty, CopyReport};
pub use memory::MemoryStorage;
pub use postgres::PostgresStorage;
pub use sqlite::SqliteStorage;

use rookery_core::storage::{Storage, StorageError};
use std::sync::Arc;

/// Opens the backend a storage URL names (`sqlite://path`, `postgres://…`, `memory://`).
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Storage>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(SqliteStorage::open(path).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStorage::open(url).await?));
    }
    if url.starts_with("memory://") {
        return Ok(Arc::new(MemoryStorage::default()));
    }
    anyhow::bail!(
        "unsupported storage URL `{url}` (expected sqlite://PATH, postgres://USER@HOST/DB or \
         memory://)"
    )
}

pub(crate) fn err(e: impl std::fmt::Display) -> StorageError {
    StorageError(e.to_string())
}

#[cfg(test)]
pub(crate) mod conformance;

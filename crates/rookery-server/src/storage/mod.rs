//! Storage backends behind the `rookery_core::storage` contracts, chosen by URL.

mod memory;
mod sqlite;

pub use memory::MemoryStorage;
pub use sqlite::SqliteStorage;

use rookery_core::storage::{Storage, StorageError};
use std::sync::Arc;

/// Opens the backend a storage URL names (`sqlite://path`, `memory://`).
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Storage>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(SqliteStorage::open(path).await?));
    }
    if url.starts_with("memory://") {
        return Ok(Arc::new(MemoryStorage::default()));
    }
    anyhow::bail!("unsupported storage URL `{url}` (expected sqlite://PATH or memory://)")
}

pub(crate) fn err(e: impl std::fmt::Display) -> StorageError {
    StorageError(e.to_string())
}

#[cfg(test)]
pub(crate) mod conformance;

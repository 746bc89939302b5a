//! XEP-0363 upload records and contents for both SQL backends: one body of queries, written
//! with `?` placeholders, that each backend instantiates with its own placeholder style and
//! its own way of serialising reservations per owner (`upload_tx`).

/// PostgreSQL numbers its placeholders: `?` becomes `$1`, `$2`…
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// `impl UploadStore for $storage`, its queries passed through `$q` (placeholder style).
macro_rules! sql_upload_store {
    ($storage:ty, $q:path) => {
        impl $storage {
            /// Every stored upload (not unused slots), by id: what `rookery migrate` copies.
            async fn stored_uploads(
                &self,
            ) -> rookery_core::storage::StorageResult<Vec<rookery_core::storage::Upload>> {
                use crate::storage::sql::{upload_from_row, UploadRow, UPLOAD_COLUMNS};
                let q = $q(&format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE stored = ? ORDER BY id"
                ));
                let rows: Vec<UploadRow> = sqlx::query_as(&q)
                    .bind(true)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::storage::err)?;
                Ok(rows.into_iter().map(upload_from_row).collect())
            }
        }

        #[async_trait::async_trait]
        impl rookery_core::storage::UploadStore for $storage {
            async fn upload_reserve(
                &self,
                slot: &rookery_core::storage::Upload,
                admit: &rookery_core::storage::UploadAdmission<'_>,
            ) -> rookery_core::storage::StorageResult<bool> {
                use crate::storage::err;
                use crate::storage::sql::{upload_from_row, UploadRow, UPLOAD_COLUMNS};
                let mut tx = self.upload_tx(&slot.owner).await?;
                let select = $q(&format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE owner = ?"
                ));
                let rows: Vec<UploadRow> = sqlx::query_as(&select)
                    .bind(&slot.owner)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                let held: Vec<_> = rows.into_iter().map(upload_from_row).collect();
                if !admit(&held) {
                    return Ok(false);
                }
                let insert = $q(&format!(
                    "INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"
                ));
                sqlx::query(&insert)
                    .bind(&slot.id)
                    .bind(&slot.owner)
                    .bind(&slot.filename)
                    .bind(&slot.content_type)
                    .bind(slot.size as i64)
                    .bind(slot.created as i64)
                    .bind(slot.expires.map(|e| e as i64))
                    .bind(slot.stored)
                    .bind(&slot.token_hash)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await.map_err(err)?;
                Ok(true)
            }

            async fn upload_get(
                &self,
                id: &str,
            ) -> rookery_core::storage::StorageResult<Option<rookery_core::storage::Upload>> {
                use crate::storage::sql::{upload_from_row, UploadRow, UPLOAD_COLUMNS};
                let q = $q(&format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?"
                ));
                let row: Option<UploadRow> = sqlx::query_as(&q)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::storage::err)?;
                Ok(row.map(upload_from_row))
            }

            async fn upload_by_owner(
                &self,
                owner: &str,
            ) -> rookery_core::storage::StorageResult<Vec<rookery_core::storage::Upload>> {
                use crate::storage::sql::{upload_from_row, UploadRow, UPLOAD_COLUMNS};
                let q = $q(&format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE owner = ? ORDER BY id"
                ));
                let rows: Vec<UploadRow> = sqlx::query_as(&q)
                    .bind(owner)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::storage::err)?;
                Ok(rows.into_iter().map(upload_from_row).collect())
            }

            async fn upload_finish(
                &self,
                id: &str,
                created: u64,
                expires: Option<u64>,
                staged: Option<&str>,
            ) -> rookery_core::storage::StorageResult<bool> {
                use crate::storage::err;
                let mut tx = self.pool.begin().await.map_err(err)?;
                let q = $q("UPDATE uploads SET stored = ?, created = ?, expires = ?,
                            token_hash = ? WHERE id = ? AND stored = ?");
                let done = sqlx::query(&q)
                    .bind(true)
                    .bind(created as i64)
                    .bind(expires.map(|e| e as i64))
                    .bind(Vec::<u8>::new())
                    .bind(id)
                    .bind(false)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected()
                    == 1;
                if let Some(staged) = staged {
                    let q = if done {
                        $q("UPDATE upload_chunks SET id = ? WHERE id = ?")
                    } else {
                        $q("DELETE FROM upload_chunks WHERE id <> ? AND id = ?")
                    };
                    sqlx::query(&q)
                        .bind(id)
                        .bind(staged)
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                }
                tx.commit().await.map_err(err)?;
                Ok(done)
            }

            async fn upload_restore(
                &self,
                f: &rookery_core::storage::Upload,
            ) -> rookery_core::storage::StorageResult<()> {
                use crate::storage::sql::UPLOAD_COLUMNS;
                let q = $q(&format!(
                    "INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)
                     ON CONFLICT (id) DO UPDATE SET owner = excluded.owner,
                     filename = excluded.filename, content_type = excluded.content_type,
                     size = excluded.size, created = excluded.created,
                     expires = excluded.expires, stored = excluded.stored,
                     token_hash = excluded.token_hash"
                ));
                sqlx::query(&q)
                    .bind(&f.id)
                    .bind(&f.owner)
                    .bind(&f.filename)
                    .bind(&f.content_type)
                    .bind(f.size as i64)
                    .bind(f.created as i64)
                    .bind(f.expires.map(|e| e as i64))
                    .bind(f.stored)
                    .bind(&f.token_hash)
                    .execute(&self.pool)
                    .await
                    .map_err(crate::storage::err)?;
                Ok(())
            }

            async fn upload_delete(
                &self,
                ids: &[String],
            ) -> rookery_core::storage::StorageResult<()> {
                use crate::storage::err;
                let records = $q("DELETE FROM uploads WHERE id = ?");
                let chunks = $q("DELETE FROM upload_chunks WHERE id = ? OR id LIKE ?");
                let mut tx = self.pool.begin().await.map_err(err)?;
                for id in ids {
                    sqlx::query(&records)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                    // Ids are hex digits: no LIKE wildcards in them.
                    sqlx::query(&chunks)
                        .bind(id)
                        .bind(format!("{id}~%"))
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                }
                tx.commit().await.map_err(err)
            }

            async fn upload_expired(
                &self,
                now: u64,
            ) -> rookery_core::storage::StorageResult<Vec<rookery_core::storage::Upload>> {
                use crate::storage::sql::{upload_from_row, UploadRow, UPLOAD_COLUMNS};
                let q = $q(&format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE expires <= ? ORDER BY id"
                ));
                let rows: Vec<UploadRow> = sqlx::query_as(&q)
                    .bind(now as i64)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::storage::err)?;
                Ok(rows.into_iter().map(upload_from_row).collect())
            }

            async fn upload_put_chunk(
                &self,
                id: &str,
                seq: u32,
                data: &[u8],
            ) -> rookery_core::storage::StorageResult<()> {
                let q = $q("INSERT INTO upload_chunks (id, seq, data) VALUES (?,?,?)
                            ON CONFLICT (id, seq) DO UPDATE SET data = excluded.data");
                sqlx::query(&q)
                    .bind(id)
                    .bind(seq as i32)
                    .bind(data)
                    .execute(&self.pool)
                    .await
                    .map_err(crate::storage::err)?;
                Ok(())
            }

            async fn upload_chunk(
                &self,
                id: &str,
                seq: u32,
            ) -> rookery_core::storage::StorageResult<Option<Vec<u8>>> {
                let q = $q("SELECT data FROM upload_chunks WHERE id = ? AND seq = ?");
                sqlx::query_scalar(&q)
                    .bind(id)
                    .bind(seq as i32)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::storage::err)
            }

            async fn upload_delete_chunks(
                &self,
                id: &str,
            ) -> rookery_core::storage::StorageResult<()> {
                let q = $q("DELETE FROM upload_chunks WHERE id = ?");
                sqlx::query(&q)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(crate::storage::err)?;
                Ok(())
            }
        }
    };
}
pub(crate) use sql_upload_store;

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(
            super::numbered("a = ? AND b IN (?, ?)"),
            "a = $1 AND b IN ($2, $3)"
        );
    }
}

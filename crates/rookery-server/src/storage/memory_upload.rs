//! In-memory uploads (XEP-0363 records and contents).

use super::MemoryStorage;
use crate::storage::err;
use async_trait::async_trait;
use rookery_core::storage::*;
use std::collections::BTreeMap;

#[derive(Default)]
pub(super) struct Uploads {
    records: BTreeMap<String, Upload>,
    chunks: BTreeMap<(String, u32), Vec<u8>>,
}

impl Uploads {
    pub(super) fn stored(&self) -> Vec<Upload> {
        self.records
            .values()
            .filter(|u| u.stored)
            .cloned()
            .collect()
    }

    fn drop_chunks(&mut self, id: &str) {
        self.chunks.retain(|(i, _), _| i != id);
    }

    fn drop_staged(&mut self, id: &str) {
        let prefix = format!("{id}~");
        self.chunks.retain(|(i, _), _| !i.starts_with(&prefix));
    }
}

#[async_trait]
impl UploadStore for MemoryStorage {
    async fn upload_reserve(
        &self,
        slot: &Upload,
        admit: &UploadAdmission<'_>,
    ) -> StorageResult<bool> {
        let mut g = self.inner.lock().unwrap();
        let u = &mut g.uploads;
        if u.records.contains_key(&slot.id) {
            return Err(err(format!("upload id {} is taken", slot.id)));
        }
        let held: Vec<Upload> = u
            .records
            .values()
            .filter(|r| r.owner == slot.owner)
            .cloned()
            .collect();
        if !admit(&held) {
            return Ok(false);
        }
        u.records.insert(slot.id.clone(), slot.clone());
        Ok(true)
    }

    async fn upload_get(&self, id: &str) -> StorageResult<Option<Upload>> {
        Ok(self.inner.lock().unwrap().uploads.records.get(id).cloned())
    }

    async fn upload_by_owner(&self, owner: &str) -> StorageResult<Vec<Upload>> {
        let g = self.inner.lock().unwrap();
        Ok(g.uploads
            .records
            .values()
            .filter(|r| r.owner == owner)
            .cloned()
            .collect())
    }

    async fn upload_finish(
        &self,
        id: &str,
        created: u64,
        expires: Option<u64>,
        staged: Option<&str>,
    ) -> StorageResult<bool> {
        let mut g = self.inner.lock().unwrap();
        let u = &mut g.uploads;
        let pieces: Vec<(u32, Vec<u8>)> = match staged {
            Some(s) => {
                let keys: Vec<(String, u32)> =
                    u.chunks.keys().filter(|(i, _)| i == s).cloned().collect();
                keys.into_iter()
                    .filter_map(|k| u.chunks.remove(&k).map(|d| (k.1, d)))
                    .collect()
            }
            None => Vec::new(),
        };
        match u.records.get_mut(id) {
            Some(r) if !r.stored => {
                r.stored = true;
                r.created = created;
                r.expires = expires;
                r.token_hash.clear();
                u.drop_chunks(id);
                for (seq, d) in pieces {
                    u.chunks.insert((id.to_string(), seq), d);
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn upload_restore(&self, file: &Upload) -> StorageResult<()> {
        let mut g = self.inner.lock().unwrap();
        g.uploads.records.insert(file.id.clone(), file.clone());
        Ok(())
    }

    async fn upload_delete(&self, ids: &[String]) -> StorageResult<()> {
        let mut g = self.inner.lock().unwrap();
        for id in ids {
            g.uploads.records.remove(id);
            g.uploads.drop_chunks(id);
            g.uploads.drop_staged(id);
        }
        Ok(())
    }

    async fn upload_expired(&self, now: u64) -> StorageResult<Vec<Upload>> {
        let g = self.inner.lock().unwrap();
        Ok(g.uploads
            .records
            .values()
            .filter(|r| r.expires.is_some_and(|e| e <= now))
            .cloned()
            .collect())
    }

    async fn upload_put_chunk(&self, id: &str, seq: u32, data: &[u8]) -> StorageResult<()> {
        let mut g = self.inner.lock().unwrap();
        g.uploads
            .chunks
            .insert((id.to_string(), seq), data.to_vec());
        Ok(())
    }

    async fn upload_chunk(&self, id: &str, seq: u32) -> StorageResult<Option<Vec<u8>>> {
        let g = self.inner.lock().unwrap();
        Ok(g.uploads.chunks.get(&(id.to_string(), seq)).cloned())
    }

    async fn upload_delete_chunks(&self, id: &str) -> StorageResult<()> {
        self.inner.lock().unwrap().uploads.drop_chunks(id);
        Ok(())
    }
}

//! XEP-0363 file store: each upload is `<dir>/<id>` with its metadata beside it in
//! `<dir>/<id>.json`; an in-memory index of both answers GETs and quota checks, and is rebuilt
//! from the directory at start. Quota rules are pure functions of the index and the time.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const DAY: u64 = 86_400;

/// What is known of a stored file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub owner: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds after which the file goes; none: kept forever.
    pub expires: Option<u64>,
}

/// A slot handed out and not used yet: it counts against quotas until used or void.
#[derive(Clone, Debug)]
struct Reservation {
    owner: String,
    size: u64,
    created: u64,
    until: u64,
}

/// The limits a new upload is checked against (0: none).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub quota: u64,
    pub daily: u64,
}

/// Why an upload may not be stored now.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The user's stored files would exceed the quota; they may retry once enough of them
    /// expire (if they do).
    Quota { retry: Option<u64> },
    /// The user uploaded too much in the last 24 hours; retry when enough of it is older.
    Daily { retry: Option<u64> },
}

#[derive(Default)]
struct Index {
    files: HashMap<String, Meta>,
    pending: HashMap<String, Reservation>,
}

pub struct Store {
    pub dir: PathBuf,
    index: Mutex<Index>,
}

impl Store {
    pub fn new(dir: PathBuf) -> Store {
        Store {
            dir,
            index: Mutex::default(),
        }
    }

    pub fn data_path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn part_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.part"))
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Reads the directory into the index. Leftovers of interrupted uploads (partial files,
    /// data without metadata, metadata without data) are removed.
    pub async fn load(&self) -> std::io::Result<usize> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let mut found = HashMap::new();
        let mut names = Vec::new();
        let mut rd = tokio::fs::read_dir(&self.dir).await?;
        while let Some(e) = rd.next_entry().await? {
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        for name in &names {
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if !is_id(id) {
                continue;
            }
            let meta = tokio::fs::read(self.dir.join(name))
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<Meta>(&b).ok());
            match meta {
                Some(m) if names.iter().any(|n| n == id) => {
                    found.insert(id.to_string(), m);
                }
                _ => remove(&self.dir.join(name)).await,
            }
        }
        for name in &names {
            let stray = match name
                .strip_suffix(".part")
                .or_else(|| name.strip_suffix(".json.tmp"))
            {
                Some(id) => is_id(id),
                None => is_id(name) && !found.contains_key(name.as_str()),
            };
            if stray {
                remove(&self.dir.join(name)).await;
            }
        }
        let n = found.len();
        self.index.lock().expect("index lock").files = found;
        Ok(n)
    }

    pub fn get(&self, id: &str) -> Option<Meta> {
        self.index
            .lock()
            .expect("index lock")
            .files
            .get(id)
            .cloned()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.index
            .lock()
            .expect("index lock")
            .files
            .contains_key(id)
    }

    /// Checks an upload of `size` bytes by `owner` against the limits at `now`; when it fits,
    /// reserves it under `id` until `until` (the slot's end).
    pub fn reserve(
        &self,
        id: &str,
        owner: &str,
        size: u64,
        limits: Limits,
        now: u64,
        until: u64,
    ) -> Result<(), Refusal> {
        let mut ix = self.index.lock().expect("index lock");
        ix.pending.retain(|_, r| r.until > now);
        ix.check(owner, size, limits, now, None)?;
        ix.pending.insert(
            id.to_string(),
            Reservation {
                owner: owner.to_string(),
                size,
                created: now,
                until,
            },
        );
        Ok(())
    }

    /// Checks again at upload time, unless the slot's reservation still holds its place (it
    /// does not after a restart).
    pub fn recheck(
        &self,
        id: &str,
        owner: &str,
        size: u64,
        limits: Limits,
        now: u64,
    ) -> Result<(), Refusal> {
        let ix = self.index.lock().expect("index lock");
        if ix.pending.contains_key(id) {
            return Ok(());
        }
        ix.check(owner, size, limits, now, Some(id))
    }

    /// Records a finished upload: metadata to disk (written aside, then renamed), then the index.
    pub async fn commit(&self, id: &str, meta: Meta) -> std::io::Result<()> {
        let tmp = self.dir.join(format!("{id}.json.tmp"));
        tokio::fs::write(&tmp, serde_json::to_vec(&meta).expect("meta serialises")).await?;
        tokio::fs::rename(&tmp, self.meta_path(id)).await?;
        let mut ix = self.index.lock().expect("index lock");
        ix.pending.remove(id);
        ix.files.insert(id.to_string(), meta);
        Ok(())
    }

    /// Removes the files expired at `now`; returns how many.
    pub async fn expire(&self, now: u64) -> usize {
        let gone: Vec<String> = {
            let mut ix = self.index.lock().expect("index lock");
            ix.pending.retain(|_, r| r.until > now);
            let ids: Vec<String> = ix
                .files
                .iter()
                .filter(|(_, m)| m.expires.is_some_and(|e| e <= now))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &ids {
                ix.files.remove(id);
            }
            ids
        };
        for id in &gone {
            remove(&self.meta_path(id)).await;
            remove(&self.data_path(id)).await;
        }
        gone.len()
    }

    /// Removes every file of `owner` (the account was deleted).
    pub async fn remove_owner(&self, owner: &str) {
        let gone: Vec<String> = {
            let mut ix = self.index.lock().expect("index lock");
            let ids: Vec<String> = ix
                .files
                .iter()
                .filter(|(_, m)| m.owner == owner)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &ids {
                ix.files.remove(id);
            }
            ids
        };
        for id in &gone {
            remove(&self.meta_path(id)).await;
            remove(&self.data_path(id)).await;
        }
    }
}

impl Index {
    /// The quota rules; `skip` is a reservation not to count (the upload being checked).
    fn check(
        &self,
        owner: &str,
        size: u64,
        limits: Limits,
        now: u64,
        skip: Option<&str>,
    ) -> Result<(), Refusal> {
        // (size, created, expires) of everything the owner holds or has reserved.
        let held: Vec<(u64, u64, Option<u64>)> = self
            .files
            .values()
            .filter(|m| m.owner == owner)
            .map(|m| (m.size, m.created, m.expires))
            .chain(
                self.pending
                    .iter()
                    .filter(|(id, r)| r.owner == owner && Some(id.as_str()) != skip)
                    .map(|(_, r)| (r.size, r.created, Some(r.until))),
            )
            .collect();
        if limits.quota > 0 {
            let total: u64 = held.iter().map(|h| h.0).sum();
            if total + size > limits.quota {
                // Room is made as files expire, soonest first.
                let mut by_expiry: Vec<(u64, u64)> =
                    held.iter().filter_map(|h| h.2.map(|e| (e, h.0))).collect();
                by_expiry.sort();
                let retry = free_at(total + size, limits.quota, &by_expiry);
                return Err(Refusal::Quota { retry });
            }
        }
        if limits.daily > 0 {
            let mut recent: Vec<(u64, u64)> = held
                .iter()
                .filter(|h| h.1 + DAY > now)
                .map(|h| (h.1 + DAY, h.0))
                .collect();
            let total: u64 = recent.iter().map(|r| r.1).sum();
            if total + size > limits.daily {
                recent.sort();
                let retry = free_at(total + size, limits.daily, &recent);
                return Err(Refusal::Daily { retry });
            }
        }
        Ok(())
    }
}

/// The first of the (time, bytes freed) events, in order, after which `need` fits `limit`.
fn free_at(mut need: u64, limit: u64, events: &[(u64, u64)]) -> Option<u64> {
    for (at, bytes) in events {
        need = need.saturating_sub(*bytes);
        if need <= limit {
            return Some(*at);
        }
    }
    None
}

/// Upload ids are 32 lowercase hex digits: nothing else in the directory is ours to touch.
pub fn is_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn new_id() -> String {
    rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn remove(p: &Path) {
    if let Err(e) = tokio::fs::remove_file(p).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %p.display(), %e, "cannot remove upload file");
        }
    }
}

/// The upload secret in `path`, created (32 random bytes, owner-only) on first use.
pub async fn load_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    match tokio::fs::read(path).await {
        Ok(k) if k.len() >= 32 => return Ok(k),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is shorter than 32 bytes", path.display()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key: [u8; 32] = rand::random();
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    use tokio::io::AsyncWriteExt;
    let mut f = opts.open(path).await?;
    f.write_all(&key).await?;
    f.sync_all().await?;
    Ok(key.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_LIMITS: Limits = Limits { quota: 0, daily: 0 };

    fn meta(owner: &str, size: u64, created: u64, expires: Option<u64>) -> Meta {
        Meta {
            owner: owner.into(),
            filename: "f".into(),
            content_type: "text/plain".into(),
            size,
            created,
            expires,
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path().join("upload"));
        (dir, s)
    }

    #[tokio::test]
    async fn quota_counts_files_and_reservations_and_says_when_to_retry() {
        let (_d, s) = store();
        s.load().await.unwrap();
        let limits = Limits {
            quota: 100,
            daily: 0,
        };
        s.commit(&new_id(), meta("a@x", 60, 10, Some(500)))
            .await
            .unwrap();
        s.reserve(&new_id(), "a@x", 30, limits, 20, 320).unwrap();
        // 60 stored + 30 reserved + 20 > 100: room once the reservation lapses at 320.
        assert_eq!(
            s.reserve(&new_id(), "a@x", 20, limits, 20, 320),
            Err(Refusal::Quota { retry: Some(320) })
        );
        // Another user is not affected.
        s.reserve(&new_id(), "b@x", 100, limits, 20, 320).unwrap();
        // Once the reservation is void, 40 more fit.
        s.reserve(&new_id(), "a@x", 40, limits, 400, 700).unwrap();
        // Files kept forever never make room.
        s.commit(&new_id(), meta("c@x", 100, 10, None))
            .await
            .unwrap();
        assert_eq!(
            s.reserve(&new_id(), "c@x", 1, limits, 20, 320),
            Err(Refusal::Quota { retry: None })
        );
    }

    #[tokio::test]
    async fn daily_limit_is_a_rolling_day() {
        let (_d, s) = store();
        s.load().await.unwrap();
        let limits = Limits {
            quota: 0,
            daily: 100,
        };
        s.commit(&new_id(), meta("a@x", 50, 1000, None))
            .await
            .unwrap();
        s.commit(&new_id(), meta("a@x", 40, 2000, None))
            .await
            .unwrap();
        assert_eq!(
            s.reserve(&new_id(), "a@x", 20, limits, 3000, 3300),
            Err(Refusal::Daily {
                retry: Some(1000 + DAY)
            })
        );
        s.reserve(&new_id(), "a@x", 10, limits, 3000, 3300).unwrap();
        s.reserve(&new_id(), "a@x", 20, limits, 1000 + DAY, 1300 + DAY)
            .unwrap();
        assert!(s.reserve(&new_id(), "a@x", 1, NO_LIMITS, 0, 1).is_ok());
    }

    #[tokio::test]
    async fn recheck_skips_the_own_reservation_and_checks_after_restart() {
        let (_d, s) = store();
        s.load().await.unwrap();
        let limits = Limits {
            quota: 100,
            daily: 0,
        };
        let id = new_id();
        s.reserve(&id, "a@x", 100, limits, 0, 300).unwrap();
        assert!(s.recheck(&id, "a@x", 100, limits, 10).is_ok());
        // Another store over the same directory (a restart) knows no reservation.
        let stored = new_id();
        tokio::fs::write(s.data_path(&stored), b"x").await.unwrap();
        s.commit(&stored, meta("a@x", 50, 0, None)).await.unwrap();
        let again = Store::new(s.dir.clone());
        assert_eq!(again.load().await.unwrap(), 1);
        assert!(again.recheck(&id, "a@x", 100, limits, 10).is_err());
        assert!(again.recheck(&id, "a@x", 50, limits, 10).is_ok());
    }

    #[tokio::test]
    async fn load_drops_leftovers_and_expire_removes_files() {
        let (_d, s) = store();
        s.load().await.unwrap();
        let keep = new_id();
        let old = new_id();
        for (id, expires) in [(&keep, 2000), (&old, 1000)] {
            tokio::fs::write(s.data_path(id), b"data").await.unwrap();
            s.commit(id, meta("a@x", 4, 0, Some(expires)))
                .await
                .unwrap();
        }
        let partial = new_id();
        tokio::fs::write(s.part_path(&partial), b"da")
            .await
            .unwrap();
        let half_meta = s.dir.join(format!("{partial}.json.tmp"));
        tokio::fs::write(&half_meta, b"{").await.unwrap();
        let orphan = new_id();
        tokio::fs::write(s.data_path(&orphan), b"data")
            .await
            .unwrap();
        tokio::fs::write(s.dir.join("README"), b"not ours")
            .await
            .unwrap();

        let s2 = Store::new(s.dir.clone());
        assert_eq!(s2.load().await.unwrap(), 2);
        assert!(!s2.part_path(&partial).exists() && !half_meta.exists());
        assert!(!s2.data_path(&orphan).exists());
        assert!(s2.dir.join("README").exists());

        assert_eq!(s2.expire(1500).await, 1);
        assert!(s2.get(&old).is_none() && !s2.data_path(&old).exists());
        assert!(s2.get(&keep).is_some() && s2.data_path(&keep).exists());
    }

    #[tokio::test]
    async fn the_secret_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("upload.key");
        let a = load_secret(&p).await.unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(load_secret(&p).await.unwrap(), a);
    }
}

//! XEP-0363 upload store: slots and files are records in the server's storage, which every node
//! of a cluster shares, so a slot granted by one node is honoured by another; contents are files
//! under a directory (`Contents::Files`) or pieces in the database (`Contents::Database`), which
//! every node serves. Quota rules are pure functions of the records and the time.

use rookery_core::config::UploadContents as Contents;
use rookery_core::storage::{Storage, StorageResult, Upload};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

const DAY: u64 = 86_400;
/// A lapsed slot stays recorded this long, so that an upload begun just before the end still
/// finds it; it no longer counts against quotas meanwhile.
pub const SLOT_GRACE: u64 = DAY;
/// Files in the directory this old without a record are leftovers (younger ones may be uploads
/// under way on another node sharing the directory).
const STRAY_AGE: Duration = Duration::from_secs(3600);

/// The limits a new upload is checked against (0: none).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub quota: u64,
    pub daily: u64,
}

/// Why an upload may not be stored now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The user's stored files would exceed the quota; they may retry once enough of them
    /// expire (if they do).
    Quota { retry: Option<u64> },
    /// The user uploaded too much in the last 24 hours; retry when enough of it is older.
    Daily { retry: Option<u64> },
}

pub struct Store {
    pub contents: Contents,
    /// Where `Files` keeps contents; also where files of older versions are picked up.
    pub dir: PathBuf,
    storage: OnceLock<Arc<dyn Storage>>,
}

impl Store {
    pub fn new(contents: Contents, dir: PathBuf) -> Store {
        Store {
            contents,
            dir,
            storage: OnceLock::new(),
        }
    }

    /// Attaches the server's storage (before the first request).
    pub fn attach(&self, storage: Arc<dyn Storage>) {
        let _ = self.storage.set(storage);
    }

    pub fn storage(&self) -> &dyn Storage {
        self.storage_arc_ref().as_ref()
    }

    pub fn storage_arc(&self) -> Arc<dyn Storage> {
        self.storage_arc_ref().clone()
    }

    fn storage_arc_ref(&self) -> &Arc<dyn Storage> {
        self.storage.get().expect("upload store attached")
    }

    pub fn data_path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn part_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.part"))
    }

    /// Records `slot` if its owner's files and live slots leave room for it at `now`.
    pub async fn reserve(
        &self,
        slot: &Upload,
        limits: Limits,
        now: u64,
    ) -> StorageResult<Result<(), Refusal>> {
        let refusal = Mutex::new(None);
        let admit = |held: &[Upload]| match check(held, slot.size, limits, now) {
            Ok(()) => true,
            Err(r) => {
                *refusal.lock().expect("refusal lock") = Some(r);
                false
            }
        };
        if self.storage().upload_reserve(slot, &admit).await? {
            return Ok(Ok(()));
        }
        let refused = refusal.lock().expect("refusal lock").take();
        Ok(Err(refused.unwrap_or(Refusal::Quota { retry: None })))
    }

    /// A stored, unexpired file by id.
    pub async fn file(&self, id: &str, now: u64) -> StorageResult<Option<Upload>> {
        Ok(self
            .storage()
            .upload_get(id)
            .await?
            .filter(|u| u.stored && u.expires.is_none_or(|e| e > now)))
    }

    /// Removes the records and contents of `gone`.
    async fn remove(&self, gone: &[Upload]) -> StorageResult<()> {
        if gone.is_empty() {
            return Ok(());
        }
        if self.contents == Contents::Files {
            for u in gone {
                remove_file(&self.data_path(&u.id)).await;
            }
        }
        let ids: Vec<String> = gone.iter().map(|u| u.id.clone()).collect();
        self.storage().upload_delete(&ids).await
    }

    /// Removes the files expired at `now` and the slots lapsed long enough; returns how many
    /// files went.
    pub async fn expire(&self, now: u64) -> StorageResult<usize> {
        let gone: Vec<Upload> = self
            .storage()
            .upload_expired(now)
            .await?
            .into_iter()
            .filter(|u| u.stored || u.expires.is_some_and(|e| e + SLOT_GRACE <= now))
            .collect();
        self.remove(&gone).await?;
        Ok(gone.iter().filter(|u| u.stored).count())
    }

    /// Removes every file and slot of `owner` (the account was deleted).
    pub async fn remove_owner(&self, owner: &str) -> StorageResult<()> {
        let gone = self.storage().upload_by_owner(owner).await?;
        self.remove(&gone).await
    }

    /// Brings the directory in line with the records at start: files of versions that kept
    /// metadata beside them (`<id>.json`) are recorded; with `Database` contents, recorded files
    /// move into the database; leftovers of interrupted uploads go. Returns how many files were
    /// taken over.
    pub async fn load(&self) -> anyhow::Result<usize> {
        let mut names = Vec::new();
        match tokio::fs::read_dir(&self.dir).await {
            Ok(mut rd) => {
                while let Some(e) = rd.next_entry().await? {
                    names.push(e.file_name().to_string_lossy().into_owned());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if self.contents == Contents::Files {
            tokio::fs::create_dir_all(&self.dir).await?;
        }
        let mut taken = 0;
        for name in &names {
            let Some(id) = name.strip_suffix(".json").filter(|id| is_id(id)) else {
                continue;
            };
            let legacy = tokio::fs::read(self.dir.join(name))
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<LegacyMeta>(&b).ok());
            if let Some(m) = legacy.filter(|_| names.iter().any(|n| n == id)) {
                self.storage().upload_restore(&m.into_upload(id)).await?;
                taken += 1;
            }
            remove_file(&self.dir.join(name)).await;
        }
        for name in &names {
            let path = self.dir.join(name);
            if !is_id(name) {
                let leftover = name
                    .strip_suffix(".part")
                    .or_else(|| name.strip_suffix(".json.tmp"))
                    .is_some_and(is_id);
                if leftover && older_than(&path, STRAY_AGE).await {
                    remove_file(&path).await;
                }
                continue;
            }
            let record = self.storage().upload_get(name).await?;
            match (record.filter(|u| u.stored), self.contents) {
                (Some(_), Contents::Files) => {}
                (Some(u), Contents::Database) => {
                    self.import(&u, &path).await?;
                    remove_file(&path).await;
                    taken += 1;
                }
                (None, _) => {
                    if older_than(&path, STRAY_AGE).await {
                        remove_file(&path).await;
                    }
                }
            }
        }
        Ok(taken)
    }

    /// Copies the file at `path` into the database as the contents of `u`.
    async fn import(&self, u: &Upload, path: &Path) -> anyhow::Result<()> {
        use tokio::io::AsyncReadExt;
        let mut f = tokio::fs::File::open(path).await?;
        let mut buf = vec![0; rookery_core::storage::UPLOAD_CHUNK];
        let mut seq = 0;
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                let n = f.read(&mut buf[filled..]).await?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            self.storage()
                .upload_put_chunk(&u.id, seq, &buf[..filled])
                .await?;
            seq += 1;
            if filled < buf.len() {
                break;
            }
        }
        Ok(())
    }
}

/// The metadata file versions before 0.2 kept beside each upload.
#[derive(serde::Deserialize)]
struct LegacyMeta {
    owner: String,
    filename: String,
    content_type: String,
    size: u64,
    created: u64,
    expires: Option<u64>,
}

impl LegacyMeta {
    fn into_upload(self, id: &str) -> Upload {
        Upload {
            id: id.to_string(),
            owner: self.owner,
            filename: self.filename,
            content_type: self.content_type,
            size: self.size,
            created: self.created,
            expires: self.expires,
            stored: true,
            token_hash: Vec::new(),
        }
    }
}

/// The quota rules: whether `size` more bytes fit beside what the owner `held` at `now` (files
/// not expired, slots not lapsed).
pub fn check(held: &[Upload], size: u64, limits: Limits, now: u64) -> Result<(), Refusal> {
    // (size, created, expires) of everything the owner holds or has reserved.
    let held: Vec<(u64, u64, Option<u64>)> = held
        .iter()
        .filter(|u| u.expires.is_none_or(|e| e > now))
        .map(|u| (u.size, u.created, u.expires))
        .collect();
    if limits.quota > 0 {
        let total: u64 = held.iter().map(|h| h.0).sum();
        if total + size > limits.quota {
            // Room is made as files expire and slots lapse, soonest first.
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
    crate::secrets::hex(&rand::random::<[u8; 16]>())
}

async fn older_than(p: &Path, age: Duration) -> bool {
    tokio::fs::metadata(p)
        .await
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|d| d >= age)
}

pub async fn remove_file(p: &Path) {
    if let Err(e) = tokio::fs::remove_file(p).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %p.display(), %e, "cannot remove upload file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    const NO_LIMITS: Limits = Limits { quota: 0, daily: 0 };

    fn file(owner: &str, size: u64, created: u64, expires: Option<u64>) -> Upload {
        Upload {
            id: new_id(),
            owner: owner.into(),
            filename: "f".into(),
            content_type: "text/plain".into(),
            size,
            created,
            expires,
            stored: true,
            token_hash: Vec::new(),
        }
    }

    fn slot(owner: &str, size: u64, created: u64, until: u64) -> Upload {
        Upload {
            stored: false,
            token_hash: vec![1; 32],
            ..file(owner, size, created, Some(until))
        }
    }

    fn store(contents: Contents) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(contents, dir.path().join("upload"));
        s.attach(Arc::new(MemoryStorage::default()));
        (dir, s)
    }

    #[tokio::test]
    async fn quota_counts_files_and_reservations_and_says_when_to_retry() {
        let (_d, s) = store(Contents::Database);
        let limits = Limits {
            quota: 100,
            daily: 0,
        };
        s.storage()
            .upload_restore(&file("a@x", 60, 10, Some(500)))
            .await
            .unwrap();
        s.reserve(&slot("a@x", 30, 20, 320), limits, 20)
            .await
            .unwrap()
            .unwrap();
        // 60 stored + 30 reserved + 20 > 100: room once the reservation lapses at 320.
        assert_eq!(
            s.reserve(&slot("a@x", 20, 20, 320), limits, 20)
                .await
                .unwrap(),
            Err(Refusal::Quota { retry: Some(320) })
        );
        // Another user is not affected.
        s.reserve(&slot("b@x", 100, 20, 320), limits, 20)
            .await
            .unwrap()
            .unwrap();
        // Once the reservation is void, 40 more fit.
        s.reserve(&slot("a@x", 40, 400, 700), limits, 400)
            .await
            .unwrap()
            .unwrap();
        // Files kept forever never make room.
        s.storage()
            .upload_restore(&file("c@x", 100, 10, None))
            .await
            .unwrap();
        assert_eq!(
            s.reserve(&slot("c@x", 1, 20, 320), limits, 20)
                .await
                .unwrap(),
            Err(Refusal::Quota { retry: None })
        );
    }

    #[test]
    fn daily_limit_is_a_rolling_day() {
        let limits = Limits {
            quota: 0,
            daily: 100,
        };
        let held = [file("a@x", 50, 1000, None), file("a@x", 40, 2000, None)];
        assert_eq!(
            check(&held, 20, limits, 3000),
            Err(Refusal::Daily {
                retry: Some(1000 + DAY)
            })
        );
        assert!(check(&held, 10, limits, 3000).is_ok());
        assert!(check(&held, 20, limits, 1000 + DAY).is_ok());
        assert!(check(&held, 1 << 40, NO_LIMITS, 0).is_ok());
    }

    #[tokio::test]
    async fn expiry_removes_files_and_long_lapsed_slots() {
        let (_d, s) = store(Contents::Files);
        s.load().await.unwrap();
        let keep = file("a@x", 4, 0, Some(2000));
        let old = file("a@x", 4, 0, Some(1000));
        for f in [&keep, &old] {
            tokio::fs::write(s.data_path(&f.id), b"data").await.unwrap();
            s.storage().upload_restore(f).await.unwrap();
        }
        let lapsed = slot("a@x", 4, 0, 1000);
        s.reserve(&lapsed, NO_LIMITS, 0).await.unwrap().unwrap();
        assert_eq!(s.expire(1500).await.unwrap(), 1);
        assert!(s.file(&old.id, 0).await.unwrap().is_none());
        assert!(!s.data_path(&old.id).exists());
        assert!(s.file(&keep.id, 1500).await.unwrap().is_some());
        assert!(s.data_path(&keep.id).exists());
        // The lapsed slot stays through its grace, in case an upload to it is under way.
        assert!(s.storage().upload_get(&lapsed.id).await.unwrap().is_some());
        s.expire(1000 + SLOT_GRACE).await.unwrap();
        assert!(s.storage().upload_get(&lapsed.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn load_takes_over_older_files_and_drops_old_leftovers() {
        let (_d, s) = store(Contents::Files);
        tokio::fs::create_dir_all(&s.dir).await.unwrap();
        // A file as versions with metadata beside it left it.
        let legacy = new_id();
        tokio::fs::write(s.data_path(&legacy), b"data")
            .await
            .unwrap();
        let meta = r#"{"owner":"a@x","filename":"f.txt","content_type":"text/plain",
                       "size":4,"created":7,"expires":null}"#;
        tokio::fs::write(s.dir.join(format!("{legacy}.json")), meta)
            .await
            .unwrap();
        // A fresh partial file may be an upload under way on another node: it stays.
        let fresh = new_id();
        tokio::fs::write(s.part_path(&fresh), b"da").await.unwrap();
        tokio::fs::write(s.dir.join("README"), b"not ours")
            .await
            .unwrap();

        assert_eq!(s.load().await.unwrap(), 1);
        let u = s.file(&legacy, 100).await.unwrap().unwrap();
        assert_eq!((u.filename.as_str(), u.size, u.created), ("f.txt", 4, 7));
        assert!(!s.dir.join(format!("{legacy}.json")).exists());
        assert!(s.data_path(&legacy).exists());
        assert!(s.part_path(&fresh).exists() && s.dir.join("README").exists());
    }

    #[tokio::test]
    async fn database_contents_take_over_files_left_in_the_directory() {
        let (_d, s) = store(Contents::Database);
        tokio::fs::create_dir_all(&s.dir).await.unwrap();
        let body: Vec<u8> = (0..rookery_core::storage::UPLOAD_CHUNK + 10)
            .map(|i| i as u8)
            .collect();
        let f = file("a@x", body.len() as u64, 0, None);
        tokio::fs::write(s.data_path(&f.id), &body).await.unwrap();
        s.storage().upload_restore(&f).await.unwrap();
        assert_eq!(s.load().await.unwrap(), 1);
        assert!(!s.data_path(&f.id).exists());
        let mut back = s.storage().upload_chunk(&f.id, 0).await.unwrap().unwrap();
        back.extend(s.storage().upload_chunk(&f.id, 1).await.unwrap().unwrap());
        assert!(back == body);
        assert_eq!(s.storage().upload_chunk(&f.id, 2).await.unwrap(), None);
    }
}

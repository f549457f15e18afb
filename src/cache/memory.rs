//! A second [`Store`], in memory, for tests: it knows nothing of folders,
//! headers, renames or hard links, so a round trip through it shows that
//! the cache layer above uses the store interface only. Its entries can be
//! damaged on purpose ([`MemStore::damage`]), and it records which kinds it
//! was asked to keep ([`MemStore::kinds_put`]).

use super::store::{Body, Entry, Found, Look, Put, Staged, Store};
use super::{CacheError, Key, Stats, KINDS};
use crate::wimwrite::KnownDigests;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// One entry: its body and the body's check, taken when it was put.
#[derive(Clone)]
struct Stored {
    body: Vec<u8>,
    check: u128,
}

#[derive(Default)]
struct Inner {
    entries: BTreeMap<(&'static str, String), Stored>,
    /// File bodies: bytes and digests (None while the entry waits for them).
    files: BTreeMap<String, (Vec<u8>, Option<KnownDigests>)>,
    kinds_put: Vec<&'static str>,
}

/// Clones share the entries (two builds sharing one store).
#[derive(Clone, Default)]
pub(crate) struct MemStore(Arc<Mutex<Inner>>);

impl MemStore {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Flips a byte of the body of `key` (its check stays): the next use
    /// must find it damaged.
    pub(crate) fn damage(&self, key: &Key) -> bool {
        match self.inner().entries.get_mut(&(key.kind, key.text.clone())) {
            Some(e) if !e.body.is_empty() => {
                let mid = e.body.len() / 2;
                e.body[mid] ^= 1;
                true
            }
            _ => false,
        }
    }

    /// The number of entries of `kind`.
    pub(crate) fn count(&self, kind: &str) -> usize {
        self.inner()
            .entries
            .keys()
            .filter(|(k, _)| *k == kind)
            .count()
    }

    /// The kinds of every put, in order.
    pub(crate) fn kinds_put(&self) -> Vec<&'static str> {
        self.inner().kinds_put.clone()
    }

    fn insert(&self, key: &Key, body: Vec<u8>) {
        let check = xxhash_rust::xxh3::xxh3_128(&body);
        let mut g = self.inner();
        g.kinds_put.push(key.kind);
        g.entries
            .insert((key.kind, key.text.clone()), Stored { body, check });
    }
}

struct MemStaged<'s> {
    store: &'s MemStore,
    key: Key,
    body: Vec<u8>,
}

impl Staged for MemStaged<'_> {
    fn commit(self: Box<Self>) -> bool {
        self.store.insert(&self.key, self.body);
        true
    }
}

impl Store for MemStore {
    fn location(&self) -> String {
        "memory".into()
    }

    fn open(&self, key: &Key, _look: Look) -> Found<Entry> {
        match self.inner().entries.get(&(key.kind, key.text.clone())) {
            Some(e) => Found::Hit(Entry {
                len: e.body.len() as u64,
                check: e.check,
                reader: Box::new(std::io::Cursor::new(e.body.clone())),
                id: format!("memory:{}", key.text.escape_debug()),
            }),
            None => Found::Miss { dropped: false },
        }
    }

    fn contains(&self, key: &Key) -> bool {
        self.inner()
            .entries
            .contains_key(&(key.kind, key.text.clone()))
    }

    fn stage<'s>(&'s self, key: &Key, body: Body<'_>) -> Option<Box<dyn Staged + 's>> {
        let mut bytes = Vec::new();
        body.write_to(&mut bytes).ok()?;
        Some(Box::new(MemStaged {
            store: self,
            key: key.clone(),
            body: bytes,
        }))
    }

    fn remove(&self, key: &Key) -> bool {
        self.inner()
            .entries
            .remove(&(key.kind, key.text.clone()))
            .is_some()
    }

    fn link_file(&self, key: &Key, file: &Path) -> bool {
        let Ok(bytes) = std::fs::read(file) else {
            return false;
        };
        self.inner().files.insert(key.text.clone(), (bytes, None));
        true
    }

    fn complete_file(&self, key: &Key, digests: Option<KnownDigests>) -> Put {
        let mut g = self.inner();
        let Some((bytes, d)) = g.files.get_mut(&key.text) else {
            return Put::Skipped;
        };
        *d = Some(digests.unwrap_or_else(|| digests_of(bytes)));
        g.kinds_put.push(key.kind);
        Put::Stored
    }

    fn restore_file(&self, key: &Key, dst: &Path) -> Found<KnownDigests> {
        let Some((bytes, Some(d))) = self.inner().files.get(&key.text).cloned() else {
            return Found::Miss { dropped: false };
        };
        // Checked against its SHA-256 as a remote body would be.
        if digests_of(&bytes).sha256 != d.sha256 {
            self.inner().files.remove(&key.text);
            return Found::Miss { dropped: true };
        }
        match std::fs::write(dst, &bytes) {
            Ok(()) => Found::Hit(d),
            Err(_) => Found::Miss { dropped: false },
        }
    }

    fn stats(&self) -> Stats {
        let g = self.inner();
        let kinds = KINDS
            .iter()
            .map(|k| {
                let of: Vec<&Stored> = g
                    .entries
                    .iter()
                    .filter(|((kind, _), _)| kind == k)
                    .map(|(_, e)| e)
                    .collect();
                (
                    k.to_string(),
                    of.len() as u64,
                    of.iter().map(|e| e.body.len() as u64).sum(),
                )
            })
            .collect();
        Stats {
            dir: PathBuf::from("memory"),
            max_size: u64::MAX,
            entries: g.entries.len() as u64,
            bytes: g.entries.values().map(|e| e.body.len() as u64).sum(),
            kinds,
        }
    }

    fn clean(&self) -> Result<(u64, u64), CacheError> {
        let mut g = self.inner();
        let n = g.entries.len() as u64;
        let bytes = g.entries.values().map(|e| e.body.len() as u64).sum();
        g.entries.clear();
        g.files.clear();
        Ok((n, bytes))
    }
}

fn digests_of(bytes: &[u8]) -> KnownDigests {
    use sha2::Digest;
    KnownDigests {
        sha1: sha1::Sha1::digest(bytes).into(),
        sha256: sha2::Sha256::digest(bytes).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{hashes, Cache, Staging, LOCAL_ONLY};
    use super::*;
    use std::sync::atomic::Ordering;

    /// The input hash index, the zero-run memo and staged puts through the
    /// in-memory store; two fronts over one store are two builds sharing it.
    #[test]
    fn the_hash_index_and_staged_puts_round_trip_through_any_store() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f.bin");
        std::fs::write(&f, b"some content").unwrap();
        // Let the ctime age past the racy window (`hashes`).
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let mem = MemStore::default();
        let a = Cache::with_store(Box::new(mem.clone())).with_scope(t.path());
        let d = hashes::file_digests(Some(&a), &f).unwrap();
        assert_eq!(mem.count("hash"), 0, "the index is written at the end");
        a.flush();
        assert_eq!(mem.count("hash"), 1);
        let b = Cache::with_store(Box::new(mem.clone())).with_scope(t.path());
        assert_eq!(hashes::lookup(&b, &f), Some(d));
        // Two hits: the index entry, then the file's row in it.
        assert_eq!(b.counters.hits.load(Ordering::Relaxed), 2);

        use crate::fsutil::sha256::ZeroRuns;
        let state = [3u32; 8];
        assert_eq!(ZeroRuns::get(&b, &state, 7), None);
        ZeroRuns::put(&b, &state, 7, &[4u32; 8]);
        assert_eq!(ZeroRuns::get(&a, &state, 7), Some([4u32; 8]));

        let k1 = Key::new("verify", "staged one".into());
        let k2 = Key::new("verify", "staged two".into());
        let staging = Staging::new(&b);
        assert!(staging.put(&k1, b"ok"));
        assert!(!b.contains(&k1), "not visible before the commit");
        assert_eq!(staging.commit(), 1);
        assert_eq!(a.get(&k1).as_deref(), Some(&b"ok"[..]));
        let dropped = Staging::new(&b);
        assert!(dropped.put(&k2, b"ok"));
        drop(dropped);
        assert!(!a.contains(&k2), "an uncommitted staging leaves nothing");
        assert_eq!(
            b.stats().kinds.iter().find(|k| k.0 == "verify").unwrap().1,
            1
        );
    }

    #[test]
    fn only_secret_derived_kinds_stay_on_the_machine() {
        for kind in KINDS {
            let k = Key::new(kind, "x".into());
            assert_eq!(k.may_leave_machine(), !LOCAL_ONLY.contains(&kind), "{kind}");
        }
        assert!(!Key::new("keys", "x".into()).may_leave_machine());
    }
}

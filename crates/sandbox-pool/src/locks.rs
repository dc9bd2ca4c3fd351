//! Per-user async locks whose map shrinks back: an entry lives only while someone holds or
//! waits for that user's lock.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// A map of async locks keyed by user.
#[derive(Debug)]
pub(crate) struct LockMap<K: Eq + Hash + Clone> {
    locks: Arc<Mutex<HashMap<K, Arc<AsyncMutex<()>>>>>,
}

impl<K: Eq + Hash + Clone> Default for LockMap<K> {
    fn default() -> Self {
        Self {
            locks: Arc::default(),
        }
    }
}

/// Holds one user's lock; dropping it releases the lock and forgets the entry when nobody
/// else holds or waits for it.
#[derive(Debug)]
pub(crate) struct KeyGuard<K: Eq + Hash + Clone> {
    guard: Option<OwnedMutexGuard<()>>,
    key: K,
    locks: Arc<Mutex<HashMap<K, Arc<AsyncMutex<()>>>>>,
}

impl<K: Eq + Hash + Clone> LockMap<K> {
    fn entry(&self, key: &K) -> Arc<AsyncMutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(key.clone()).or_default())
    }

    fn guard(&self, key: K, guard: OwnedMutexGuard<()>) -> KeyGuard<K> {
        KeyGuard {
            guard: Some(guard),
            key,
            locks: Arc::clone(&self.locks),
        }
    }

    /// Waits for `key`'s lock.
    pub(crate) async fn lock(&self, key: K) -> KeyGuard<K> {
        let guard = self.entry(&key).lock_owned().await;
        self.guard(key, guard)
    }

    /// Takes `key`'s lock only if it is free now.
    pub(crate) fn try_lock(&self, key: K) -> Option<KeyGuard<K>> {
        let entry = self.entry(&key);
        match entry.try_lock_owned() {
            Ok(guard) => Some(self.guard(key, guard)),
            Err(_) => {
                // `try_lock_owned` consumed our clone; forget an entry made for nothing.
                self.forget_if_unused(&key);
                None
            }
        }
    }

    fn forget_if_unused(&self, key: &K) {
        forget_if_unused(&self.locks, key);
    }

    /// Entries in the map (for tests and the operator view).
    pub(crate) fn len(&self) -> usize {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn forget_if_unused<K: Eq + Hash>(locks: &Mutex<HashMap<K, Arc<AsyncMutex<()>>>>, key: &K) {
    let mut map = locks.lock().unwrap_or_else(|e| e.into_inner());
    // Only the map's own reference left: nobody holds it, nobody waits (waiters hold a clone),
    // and nobody can take a new clone while we hold the map's lock.
    if map.get(key).is_some_and(|l| Arc::strong_count(l) == 1) {
        map.remove(key);
    }
}

impl<K: Eq + Hash + Clone> Drop for KeyGuard<K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        forget_if_unused(&self.locks, &self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn one_holder_at_a_time_per_key_and_the_map_empties() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let locks = Arc::new(LockMap::<String>::default());
        let inside: Arc<[AtomicUsize; 2]> = Arc::default();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (locks, inside) = (Arc::clone(&locks), Arc::clone(&inside));
            tasks.push(tokio::spawn(async move {
                let key = i % 2;
                let _g = locks.lock(format!("user-{key}")).await;
                assert_eq!(
                    inside[key].fetch_add(1, SeqCst),
                    0,
                    "two holders of one key"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
                inside[key].fetch_sub(1, SeqCst);
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test]
    async fn try_lock_fails_while_held_and_leaves_no_entry_behind() {
        let locks = LockMap::<u32>::default();
        let held = locks.lock(1).await;
        assert!(locks.try_lock(1).is_none());
        assert_eq!(locks.len(), 1);
        assert!(locks.try_lock(2).is_some());
        assert_eq!(locks.len(), 1);
        drop(held);
        assert_eq!(locks.len(), 0);
        for user in 0..1000 {
            drop(locks.lock(user).await);
        }
        assert_eq!(locks.len(), 0);
    }
}

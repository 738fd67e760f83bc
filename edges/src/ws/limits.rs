//! Caps on WebSocket connections: per node (every socket counts from the moment it is
//! accepted, authenticated or not) and per user (counted once authenticated). A socket over the
//! node's cap is dropped before its handshake; a user over theirs is told why and closed with
//! 1013 (try again later).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// The node's sockets; a [`Socket`] is held for each.
#[derive(Default)]
pub struct Sockets(Arc<AtomicUsize>);

/// One accepted socket, counted until dropped.
pub struct Socket(Arc<AtomicUsize>);

impl Sockets {
    /// A slot for a new socket, unless `cap` are open.
    pub fn admit(&self, cap: usize) -> Option<Socket> {
        let mut n = self.0.load(Ordering::SeqCst);
        loop {
            if n >= cap {
                return None;
            }
            match self
                .0
                .compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Some(Socket(self.0.clone())),
                Err(now) => n = now,
            }
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Authenticated connections per user.
#[derive(Default)]
pub struct PerUser(Arc<Mutex<HashMap<Uuid, usize>>>);

/// One of a user's connections, counted until dropped.
pub struct UserSlot {
    map: Arc<Mutex<HashMap<Uuid, usize>>>,
    user: Uuid,
}

impl PerUser {
    pub fn admit(&self, user: Uuid, cap: usize) -> Option<UserSlot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(user).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(UserSlot {
            map: self.0.clone(),
            user,
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                // Users with no connection leave no entry behind.
                map.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_slots_come_back() {
        let s = Sockets::default();
        let a = s.admit(2).unwrap();
        let _b = s.admit(2).unwrap();
        assert!(s.admit(2).is_none());
        drop(a);
        assert!(s.admit(2).is_some());

        let p = PerUser::default();
        let u = Uuid::now_v7();
        let one = p.admit(u, 1).unwrap();
        assert!(p.admit(u, 1).is_none());
        assert!(p.admit(Uuid::now_v7(), 1).is_some());
        drop(one);
        assert!(p.admit(u, 1).is_some());
        assert!(p.0.lock().unwrap().is_empty(), "no entry left behind");
    }
}

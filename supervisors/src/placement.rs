//! Which node owns a session: rendezvous (highest random weight) hashing of the session id over
//! the live members. Every node computes the same owner from the same member list with no
//! coordination, and when a node joins or leaves only the sessions it wins or held move.

use std::sync::Arc;

use uuid::Uuid;

/// The live members of the cluster as this node sees them, and which one this node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    me: String,
    /// Sorted, without duplicates; holds `me` unless it is leaving.
    nodes: Arc<Vec<String>>,
}

impl Placement {
    /// A node on its own: it owns every session.
    pub fn alone(me: impl Into<String>) -> Placement {
        let me = me.into();
        Placement {
            nodes: Arc::new(vec![me.clone()]),
            me,
        }
    }

    /// `me` among `nodes` (`me` is added if missing).
    pub fn new(me: impl Into<String>, nodes: impl IntoIterator<Item = String>) -> Placement {
        let me = me.into();
        let mut nodes: Vec<String> = nodes.into_iter().collect();
        nodes.push(me.clone());
        nodes.sort();
        nodes.dedup();
        Placement {
            me,
            nodes: Arc::new(nodes),
        }
    }

    /// `me` leaving the cluster: every session is owned by one of `others` (or, with none
    /// left, still by `me`), so this node keeps only the turns already running here.
    pub fn leaving(me: impl Into<String>, others: impl IntoIterator<Item = String>) -> Placement {
        let me = me.into();
        let mut nodes: Vec<String> = others.into_iter().filter(|n| *n != me).collect();
        nodes.sort();
        nodes.dedup();
        if nodes.is_empty() {
            nodes.push(me.clone());
        }
        Placement {
            me,
            nodes: Arc::new(nodes),
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The node that owns `session_id`.
    pub fn owner(&self, session_id: Uuid) -> &str {
        self.nodes
            .iter()
            .max_by_key(|node| (weight(node, session_id), node.as_str()))
            .map_or(self.me.as_str(), String::as_str)
    }

    pub fn is_local(&self, session_id: Uuid) -> bool {
        self.owner(session_id) == self.me
    }
}

/// A stable 64-bit score of (node, session): FNV-1a over both, then a splitmix64 finaliser so
/// that nearby ids spread. Stable across processes and builds (std's hasher is not promised to
/// be), which every node of a cluster relies on.
fn weight(node: &str, session_id: Uuid) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.as_bytes().iter().chain(session_id.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("aurora@127.0.0.1:{}", 7000 + i))
            .collect()
    }

    #[test]
    fn every_node_agrees_and_sessions_spread() {
        let all = nodes(3);
        let views: Vec<Placement> = all
            .iter()
            .map(|me| Placement::new(me.clone(), all.clone()))
            .collect();
        let mut per_node = std::collections::HashMap::new();
        for _ in 0..3000 {
            let id = Uuid::new_v4();
            let owner = views[0].owner(id).to_string();
            assert!(views.iter().all(|v| v.owner(id) == owner));
            assert_eq!(views.iter().filter(|v| v.is_local(id)).count(), 1);
            *per_node.entry(owner).or_insert(0) += 1;
        }
        for (node, n) in per_node {
            assert!((800..1200).contains(&n), "{node} owns {n} of 3000");
        }
    }

    #[test]
    fn only_the_leaving_nodes_sessions_move() {
        let all = nodes(3);
        let before = Placement::new(all[0].clone(), all.clone());
        let after = Placement::new(all[0].clone(), all[..2].to_vec());
        for _ in 0..2000 {
            let id = Uuid::new_v4();
            if before.owner(id) != all[2] {
                assert_eq!(before.owner(id), after.owner(id));
            } else {
                assert_ne!(after.owner(id), all[2]);
            }
        }
        assert!(Placement::alone("a").is_local(Uuid::new_v4()));
        let leaving = Placement::leaving(all[0].clone(), all.clone());
        assert!((0..100).all(|_| !leaving.is_local(Uuid::new_v4())));
        assert!(Placement::leaving("a", Vec::new()).is_local(Uuid::new_v4()));
    }
}

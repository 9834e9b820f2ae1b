//! [`Sessions`]: who is connected to the memory node, as which incarnation, and which chains each
//! connection writes — the MN's volatile view of liveness, from which it decides who may write
//! what (DESIGN.md §5).
//!
//! A connection ([`PeerId`], one queue pair) binds itself to an incarnation once, with `Hello`;
//! an incarnation is *live* while at least one connection is bound to it. A chain is attached by
//! at most one connection at a time. Fenced incarnations — ones a newer cluster map dropped —
//! may not bind again. Everything here is volatile: after a restart of the memory node nobody
//! is connected, so nobody is live, and the stored cluster map alone says who owns what.
//!
//! Limits: connections are bounded by the fabric's servers; the fenced set keeps the most recent
//! [`FENCED_MAX`] incarnations (an older fenced incarnation is also refused by every check that
//! consults the cluster map, which no longer names it).

use std::collections::{HashMap, HashSet, VecDeque};

use dinomo_control::Incarnation;
use dinomo_pmem::ChainId;

pub use crate::fabric::PeerId;

/// Fenced incarnations remembered at most.
pub const FENCED_MAX: usize = 4096;
/// Disconnected connections remembered at most, so that a request of one that was still queued
/// when it went cannot bring it back.
pub const GONE_MAX: usize = 4096;

/// Why a connection may not bind or attach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("incarnation {0} was fenced: a newer cluster map gave its slots away")]
    Fenced(Incarnation),
    #[error("this connection already said hello as incarnation {0}")]
    AlreadyBound(Incarnation),
    #[error("the connection is closed")]
    Gone,
    #[error("{chain} is attached by another live connection of incarnation {incarnation}")]
    ChainBusy {
        chain: ChainId,
        incarnation: Incarnation,
    },
}

#[derive(Debug, Default)]
struct Peer {
    incarnation: Incarnation,
    chains: Vec<ChainId>,
}

/// The registry; the memory node keeps it behind a lock (it changes on hellos, attaches and
/// disconnects, never on the verb path).
#[derive(Debug, Default)]
pub struct Sessions {
    peers: HashMap<PeerId, Peer>,
    /// Bound connections per incarnation.
    live: HashMap<Incarnation, usize>,
    attached: HashMap<ChainId, PeerId>,
    fenced: HashSet<Incarnation>,
    fenced_order: VecDeque<Incarnation>,
    gone: HashSet<PeerId>,
    gone_order: VecDeque<PeerId>,
    /// Connections closed by a fence (a subset of `gone`): their servers must drop them.
    fenced_peers: HashSet<PeerId>,
}

impl Sessions {
    /// Binds `peer` to `incarnation` (`NONE` leaves it anonymous: it may read and ask for
    /// counters, not attach). A connection binds once; saying hello again as the same
    /// incarnation is allowed.
    pub fn bind(&mut self, peer: PeerId, incarnation: Incarnation) -> Result<(), SessionError> {
        if self.fenced.contains(&incarnation) {
            return Err(SessionError::Fenced(incarnation));
        }
        if self.gone.contains(&peer) {
            return Err(SessionError::Gone);
        }
        let entry = self.peers.entry(peer).or_default();
        if entry.incarnation == incarnation {
            return Ok(());
        }
        if entry.incarnation.is_some() {
            return Err(SessionError::AlreadyBound(entry.incarnation));
        }
        entry.incarnation = incarnation;
        if incarnation.is_some() {
            *self.live.entry(incarnation).or_default() += 1;
        }
        Ok(())
    }

    /// The incarnation `peer` is bound to (`NONE` if it never said hello as one).
    pub fn incarnation(&self, peer: PeerId) -> Incarnation {
        self.peers
            .get(&peer)
            .map_or(Incarnation::NONE, |p| p.incarnation)
    }

    /// Whether some connection is bound to `incarnation`.
    pub fn is_live(&self, incarnation: Incarnation) -> bool {
        incarnation.is_some() && self.live.get(&incarnation).is_some_and(|&n| n > 0)
    }

    pub fn is_fenced(&self, incarnation: Incarnation) -> bool {
        self.fenced.contains(&incarnation)
    }

    /// Records that `peer` writes `chain`; refused while another connection has it attached.
    pub fn attach(&mut self, peer: PeerId, chain: ChainId) -> Result<(), SessionError> {
        if let Some(&other) = self.attached.get(&chain)
            && other != peer
        {
            return Err(SessionError::ChainBusy {
                chain,
                incarnation: self.incarnation(other),
            });
        }
        self.attached.insert(chain, peer);
        let entry = self.peers.entry(peer).or_default();
        if !entry.chains.contains(&chain) {
            entry.chains.push(chain);
        }
        Ok(())
    }

    /// The connection writing `chain`, if any.
    pub fn attached_by(&self, chain: ChainId) -> Option<PeerId> {
        self.attached.get(&chain).copied()
    }

    /// `peer` is gone: it is no longer live and its chains are free.
    pub fn disconnect(&mut self, peer: PeerId) {
        if self.gone.insert(peer) {
            self.gone_order.push_back(peer);
            if self.gone_order.len() > GONE_MAX
                && let Some(oldest) = self.gone_order.pop_front()
            {
                self.gone.remove(&oldest);
                self.fenced_peers.remove(&oldest);
            }
        }
        let Some(gone) = self.peers.remove(&peer) else {
            return;
        };
        for chain in gone.chains {
            if self.attached.get(&chain) == Some(&peer) {
                self.attached.remove(&chain);
            }
        }
        if gone.incarnation.is_some()
            && let Some(count) = self.live.get_mut(&gone.incarnation)
        {
            *count -= 1;
            if *count == 0 {
                self.live.remove(&gone.incarnation);
            }
        }
    }

    /// Fences `incarnation`: it may not bind again. Returns its connections, which the caller
    /// closes (a fenced incarnation's verbs must not reach the pool).
    pub fn fence(&mut self, incarnation: Incarnation) -> Vec<PeerId> {
        if !incarnation.is_some() {
            return Vec::new();
        }
        if self.fenced.insert(incarnation) {
            self.fenced_order.push_back(incarnation);
            if self.fenced_order.len() > FENCED_MAX
                && let Some(oldest) = self.fenced_order.pop_front()
            {
                self.fenced.remove(&oldest);
            }
        }
        let peers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.incarnation == incarnation)
            .map(|(&id, _)| id)
            .collect();
        for &peer in &peers {
            self.disconnect(peer);
            self.fenced_peers.insert(peer);
        }
        peers
    }

    /// Whether `peer` was closed by a fence.
    pub fn is_fenced_peer(&self, peer: PeerId) -> bool {
        self.fenced_peers.contains(&peer)
    }

    /// Connections known (bound or not).
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Incarnation = Incarnation(0xA);
    const B: Incarnation = Incarnation(0xB);

    #[test]
    fn an_incarnation_is_live_while_one_connection_is_bound() {
        let mut s = Sessions::default();
        assert!(!s.is_live(A));
        s.bind(PeerId(1), A).unwrap();
        s.bind(PeerId(2), A).unwrap();
        assert!(s.is_live(A));
        s.disconnect(PeerId(1));
        assert!(s.is_live(A));
        s.disconnect(PeerId(2));
        assert!(!s.is_live(A));
        assert!(!s.is_live(Incarnation::NONE));
    }

    #[test]
    fn a_connection_binds_once() {
        let mut s = Sessions::default();
        s.bind(PeerId(1), A).unwrap();
        s.bind(PeerId(1), A).unwrap();
        assert_eq!(s.bind(PeerId(1), B), Err(SessionError::AlreadyBound(A)));
        s.bind(PeerId(2), Incarnation::NONE).unwrap();
        s.bind(PeerId(2), B).unwrap();
        assert_eq!(s.incarnation(PeerId(2)), B);
    }

    #[test]
    fn a_closed_connection_cannot_bind_again() {
        let mut s = Sessions::default();
        s.disconnect(PeerId(4));
        assert_eq!(s.bind(PeerId(4), A), Err(SessionError::Gone));
        assert!(!s.is_live(A));
    }

    #[test]
    fn a_chain_has_one_writer_until_it_disconnects() {
        let mut s = Sessions::default();
        s.bind(PeerId(1), A).unwrap();
        s.bind(PeerId(2), B).unwrap();
        s.attach(PeerId(1), ChainId(3)).unwrap();
        s.attach(PeerId(1), ChainId(3)).unwrap();
        assert_eq!(
            s.attach(PeerId(2), ChainId(3)),
            Err(SessionError::ChainBusy {
                chain: ChainId(3),
                incarnation: A
            })
        );
        s.disconnect(PeerId(1));
        s.attach(PeerId(2), ChainId(3)).unwrap();
        assert_eq!(s.attached_by(ChainId(3)), Some(PeerId(2)));
    }

    #[test]
    fn a_fenced_incarnation_loses_its_connections_and_cannot_bind_again() {
        let mut s = Sessions::default();
        s.bind(PeerId(1), A).unwrap();
        s.attach(PeerId(1), ChainId(0)).unwrap();
        assert_eq!(s.fence(A), vec![PeerId(1)]);
        assert!(s.is_fenced_peer(PeerId(1)));
        assert!(!s.is_live(A));
        assert_eq!(s.attached_by(ChainId(0)), None);
        assert_eq!(s.bind(PeerId(5), A), Err(SessionError::Fenced(A)));
        assert!(s.fence(Incarnation::NONE).is_empty());
    }

    #[test]
    fn the_fenced_set_is_bounded() {
        let mut s = Sessions::default();
        for i in 1..=(FENCED_MAX as u64 + 10) {
            s.fence(Incarnation(i));
        }
        assert!(!s.is_fenced(Incarnation(1)));
        assert!(s.is_fenced(Incarnation(FENCED_MAX as u64 + 10)));
        assert_eq!(s.fenced.len(), FENCED_MAX);
    }
}

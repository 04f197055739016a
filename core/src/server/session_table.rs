//! [`SessionTable`]: sessions indexed by [`ConnId`] in O(1), without hashing.
//!
//! A `ConnId` packs a slot index (low 32 bits), that slot's generation (the next 24 bits, so
//! an id of a closed connection never finds the slot's next occupant until the slot has been
//! reused 2^24 times) and the node's worker number (the top 8 bits, 0 for a lone node, so ids
//! are unique across the workers of a group).

use super::session::Session;
use crate::ids::ConnId;

#[derive(Debug, Default)]
pub(crate) struct SessionTable {
    /// Each slot's generation, apart from the sessions: every look-up reads one, and
    /// packed together they stay in the cache (as a tuple with its session, the compiler put
    /// the generation after the session's hundreds of bytes, a cache line of its own).
    generations: Vec<u32>,
    sessions: Vec<Option<Session>>,
    free: Vec<u32>,
    len: usize,
    /// The worker number, in place (top 8 bits).
    tag: u64,
}

/// The generation bits of an id, in place.
const GENERATION_MASK: u64 = 0x00FF_FFFF << 32;

impl SessionTable {
    /// Ids from now on carry `worker` in their top byte.
    pub(crate) fn set_worker(&mut self, worker: u8) {
        self.tag = u64::from(worker) << 56;
    }

    /// Whether `id` names `slot`'s current occupant (same generation, same worker).
    fn matches(&self, generation: u32, id: ConnId) -> bool {
        id.0 & !(GENERATION_MASK | 0xFFFF_FFFF) == self.tag
            && (u64::from(generation) << 32) & GENERATION_MASK == id.0 & GENERATION_MASK
    }

    /// The id the next inserted session will get.
    pub(crate) fn next_id(&self) -> ConnId {
        let (index, generation) = match self.free.last() {
            Some(&i) => (i, self.generations[i as usize]),
            None => (self.sessions.len() as u32, 0),
        };
        ConnId(self.tag | ((u64::from(generation) << 32) & GENERATION_MASK) | u64::from(index))
    }

    /// Inserts a session built for the id [`Self::next_id`] returned.
    pub(crate) fn insert(&mut self, session: Session) {
        let id = session.id;
        let index = (id.0 & 0xFFFF_FFFF) as u32;
        debug_assert_eq!(id, self.next_id());
        if self.free.last() == Some(&index) {
            self.free.pop();
            self.sessions[index as usize] = Some(session);
        } else {
            self.generations.push(0);
            self.sessions.push(Some(session));
        }
        self.len += 1;
    }

    /// The slot index of `id`, if it names the slot's current occupant.
    fn index(&self, id: ConnId) -> Option<usize> {
        let index = (id.0 & 0xFFFF_FFFF) as usize;
        let generation = *self.generations.get(index)?;
        self.matches(generation, id).then_some(index)
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&Session> {
        self.sessions[self.index(id)?].as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Session> {
        let index = self.index(id)?;
        self.sessions[index].as_mut()
    }

    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Session> {
        let index = self.index(id)?;
        let session = self.sessions[index].take()?;
        self.generations[index] = self.generations[index].wrapping_add(1);
        self.free.push(index as u32);
        self.len -= 1;
        Some(session)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every live session, in slot order (for the HTTP API and the metrics, never per packet).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Session> {
        self.sessions.iter().flatten()
    }
}

//! [`SessionTable`]: sessions indexed by [`ConnId`] in O(1), without hashing.
//!
//! A `ConnId` packs a slot index (low 32 bits) and that slot's generation (high 32 bits), so
//! an id of a closed connection never finds the slot's next occupant.

use super::session::Session;
use crate::node::ConnId;

#[derive(Debug, Default)]
pub(crate) struct SessionTable {
    slots: Vec<(u32, Option<Session>)>,
    free: Vec<u32>,
    len: usize,
}

impl SessionTable {
    /// The id the next inserted session will get.
    pub fn next_id(&self) -> ConnId {
        let (index, generation) = match self.free.last() {
            Some(&i) => (i, self.slots[i as usize].0),
            None => (self.slots.len() as u32, 0),
        };
        ConnId((u64::from(generation) << 32) | u64::from(index))
    }

    /// Inserts a session built for the id [`Self::next_id`] returned.
    pub fn insert(&mut self, session: Session) {
        let id = session.id;
        let index = (id.0 & 0xFFFF_FFFF) as u32;
        debug_assert_eq!(id, self.next_id());
        if self.free.last() == Some(&index) {
            self.free.pop();
            self.slots[index as usize].1 = Some(session);
        } else {
            self.slots.push((0, Some(session)));
        }
        self.len += 1;
    }

    fn slot(&self, id: ConnId) -> Option<&(u32, Option<Session>)> {
        let slot = self.slots.get((id.0 & 0xFFFF_FFFF) as usize)?;
        (u64::from(slot.0) == id.0 >> 32).then_some(slot)
    }

    pub fn get(&self, id: ConnId) -> Option<&Session> {
        self.slot(id)?.1.as_ref()
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Session> {
        let slot = self.slots.get_mut((id.0 & 0xFFFF_FFFF) as usize)?;
        if u64::from(slot.0) != id.0 >> 32 {
            return None;
        }
        slot.1.as_mut()
    }

    pub fn remove(&mut self, id: ConnId) -> Option<Session> {
        let index = (id.0 & 0xFFFF_FFFF) as u32;
        let slot = self.slots.get_mut(index as usize)?;
        if u64::from(slot.0) != id.0 >> 32 {
            return None;
        }
        let session = slot.1.take()?;
        slot.0 = slot.0.wrapping_add(1);
        self.free.push(index);
        self.len -= 1;
        Some(session)
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

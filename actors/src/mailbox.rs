//! Mailbox depth for the admin console. ractor's mailboxes are unbounded channels that expose no
//! length, so the depth is counted here: senders go through a [`Counted`] reference, which adds
//! one per message accepted, and the actor's handler takes one off as it starts each message.
//! Status requests (`call`) are not counted: they are answered at once and would only add noise.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use ractor::{ActorRef, Message, MessagingErr};

/// Messages sent to one actor and not yet handled.
#[derive(Clone, Debug, Default)]
pub struct Mailbox(Arc<AtomicU32>);

impl Mailbox {
    pub fn new() -> Mailbox {
        Mailbox::default()
    }

    fn sent(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Called by the actor at the start of each handled message. Saturates at zero, so messages
    /// that bypassed the counter (self-sent timers) cannot make it wrap.
    pub fn taken(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub fn len(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An actor reference whose casts are counted in the actor's [`Mailbox`].
pub struct Counted<M: Message> {
    pub actor: ActorRef<M>,
    pub mailbox: Mailbox,
}

impl<M: Message> Clone for Counted<M> {
    fn clone(&self) -> Self {
        Counted {
            actor: self.actor.clone(),
            mailbox: self.mailbox.clone(),
        }
    }
}

impl<M: Message> Counted<M> {
    pub fn new(actor: ActorRef<M>, mailbox: Mailbox) -> Counted<M> {
        Counted { actor, mailbox }
    }

    /// Sends `msg` without waiting; a refused message (the actor is gone) is handed back.
    pub fn cast(&self, msg: M) -> Result<(), MessagingErr<M>> {
        self.actor.cast(msg)?;
        self.mailbox.sent();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_never_wraps() {
        let m = Mailbox::new();
        m.taken();
        assert_eq!(m.len(), 0);
        m.sent();
        m.sent();
        m.taken();
        assert_eq!(m.len(), 1);
    }
}

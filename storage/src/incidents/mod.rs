//! Incidents: alerts, the incidents they open or join, the background analyses' thoughts and
//! citations, and the live feed's events.

pub mod alert;
pub mod analysis;
pub mod correlate;
pub mod feed;
pub mod intake;
mod placement;
pub mod queries;
pub mod webhooks;

pub use alert::{AlertStatus, NewAlert, Severity, Source};
pub use feed::{Feed, FeedEvent};

use crate::Db;

/// The incident repository: every read and write of the incident tables goes through it.
#[derive(Clone)]
pub struct Incidents {
    db: Db,
    feed: Feed,
    writer: intake::AlertWriter,
}

impl Incidents {
    pub fn new(db: Db, feed: Feed) -> Incidents {
        Incidents {
            db,
            feed,
            writer: intake::AlertWriter::default(),
        }
    }

    pub fn feed(&self) -> &Feed {
        &self.feed
    }
}

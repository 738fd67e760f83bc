//! The incident pipeline's actors: vendor payloads into normalized alerts (`intake`), the
//! per-org correlator, and the background root-cause analyses.

pub mod correlator;
pub mod incident_run;
pub mod intake;

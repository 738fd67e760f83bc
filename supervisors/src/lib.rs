//! supervisors

//! The cluster across nodes. Nothing is built here yet; this crate will hold ractor_cluster's
//! node server with cookie authentication, membership from a seed list, and the placement of
//! session actors by rendezvous hashing over live members (the cluster issue).

//! The node (`flared`) side of the cluster, sans-IO: what a node decides about the requests it receives.
//!
//! - [`plan`]: a client request as a plan (run here, forward to a peer in a form it understands, split by
//!   destination, send to every master) and the merge of the answers into the client's reply.
pub mod plan;
pub mod replication;
pub mod view;

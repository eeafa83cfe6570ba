//! Where records go: the JSONL writer, and the summary printed for people at the end.

pub mod jsonl;
pub mod summary;

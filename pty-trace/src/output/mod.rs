//! Where records go: output paths opened safely as root, the JSONL writer (a thread behind a
//! bounded queue), and the summary printed for people at the end.

pub mod jsonl;
pub mod machine_table;
pub mod safe_open;
pub mod summary;

//! Where records go: output paths opened safely as root, the JSONL writer (a thread behind a
//! bounded queue), the summary printed for people at the end, and Prometheus metrics served
//! over HTTP (`--metrics`).

pub mod jsonl;
pub mod machine_table;
pub mod metrics;
pub mod metrics_http;
pub mod safe_open;
pub mod summary;

//! The pure core: everything here takes plain data (events, /proc observations, times passed
//! in) and returns plain data. No file, socket, terminal or clock is touched, so all of it is
//! tested without root, without BPF and without the eBPF toolchain.

pub mod evidence;
pub mod gate;
pub mod machine;
pub mod model;
pub mod records;
pub mod redact;
pub mod report;
pub mod report_markdown;
pub mod score;
pub mod snapshot;
pub mod watch;

#[cfg(test)]
mod sim_events;
#[cfg(test)]
mod verdict_tests;

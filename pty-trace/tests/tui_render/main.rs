//! Rendering tests of the live view: `render` into ratatui's `TestBackend`, then assertions on
//! the buffer's text and styles. Plus the pure key handling (`on_key`).
//!
//! Split by job:
//! - `fixtures`: the `ViewState`/`UiState` values drawn, and helpers to draw into a
//!   `TestBackend` and read the buffer back;
//! - `screens`: what each screen shows, at each size, with and without colour;
//! - `keys`: the key handling (`on_key`);
//! - `input`: decoding terminal input into keys (`parse_keys`);
//! - `from_records`: the view state built from snapshot records.

mod fixtures;
mod from_records;
mod input;
mod keys;
mod screens;

//! Converting subunit event streams to and from other report formats.
//!
//! Each output format is a [`proctor_events::Sink`]; each input format turns
//! its text into events for a sink.
//!
//! - [`junit`]: JUnit XML as GitLab, Jenkins and GitHub read it.
//! - [`tap`]: TAP 13/14 in both directions.
//! - [`json`]: one JSON object per event.
//! - [`text`]: human-readable events with their attachments.

pub mod json;
pub mod junit;
pub mod tap;
pub mod text;

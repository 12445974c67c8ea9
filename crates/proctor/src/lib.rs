//! Proctor as a library: what `proctor run` does, for programs that compose their own runs.
//!
//! Today it holds [`config`], the settings of a run in layers (built-in defaults < config files < `PROCTOR_*`
//! environment < explicit settings), one key per `proctor run` flag, so what a flag does can be done from a file,
//! the environment or code:
//!
//! ```
//! use std::time::Duration;
//!
//! use proctor::config::{RunSettings, Source};
//!
//! let mut settings = RunSettings::default();
//! settings.retries.set(2);
//! settings.grace.set(Duration::from_secs(3));
//! assert_eq!(*settings.retries.get(), 2);
//! assert_eq!(settings.retries.source(), &Source::Explicit);
//! assert_eq!(settings.serial.source(), &Source::Default);
//! ```

pub mod config;

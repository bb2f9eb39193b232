//! Key management: the operations behind both the CLI and the admin API ([`manage`]), what
//! they answer ([`views`]) and how they fail ([`error`]), the admin HTTP API that exposes them
//! ([`api`], with its bulk endpoints in [`bulk`]), and its guard against token guessing
//! ([`throttle`]).

pub mod api;
pub mod bulk;
pub mod error;
pub mod manage;
pub mod throttle;
pub mod views;

pub use error::ManageError;

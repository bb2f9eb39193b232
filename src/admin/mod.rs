//! Key management: the operations behind both the CLI and the admin API ([`manage`]), the
//! admin HTTP API that exposes them ([`api`]), and its guard against token guessing
//! ([`throttle`]).

pub mod api;
pub mod manage;
pub mod throttle;

//! Key management: the operations behind both the CLI and the admin API ([`manage`]), and the
//! admin HTTP API that exposes them ([`api`]).

pub mod api;
pub mod manage;

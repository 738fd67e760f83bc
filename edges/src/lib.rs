//! The edges of a node: where requests from outside enter and become calls on the repository
//! layer or messages to actors.
//!
//! Today: the HTTP API (warp) with health, auth, orgs, admin users, user preferences and chat
//! session listing. The WebSocket chat edge and the static web pages join here.

pub mod http;
pub mod ws;

pub use http::{serve_http, HttpServer, HttpState};
pub use ws::{serve_ws, WsServer, WsState};

//! Fakes for services this machine cannot reach. Each is a real HTTP server on 127.0.0.1 that
//! speaks the service's protocol, started by the test that needs it and stopped when dropped.
//! [`seaweed::SeaweedFs`] and [`openbao::OpenBao`] are the exceptions: the real SeaweedFS and
//! OpenBao servers, started the same way.
//! The LLM fakes answer from a script of [`Reply`]s, one per request, and record every request.

pub mod anthropic;
pub mod openai;
pub mod openbao;
mod script;
pub mod seaweed;
mod server;

pub use script::{Completion, Reply, ScriptedCall};
pub use server::FakeServer;

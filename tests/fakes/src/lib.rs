//! Fakes for services this machine cannot reach. Each is a real HTTP server on 127.0.0.1 that
//! speaks the service's protocol, started by the test that needs it and stopped when dropped.

pub mod openai;

//! rookery-bench as a library: the XMPP client pieces (STARTTLS, SCRAM, bind) the load generator
//! is built from, reused by the server's protocol tests.

pub mod client;
pub mod procstat;
pub mod scram;
pub mod split;
pub mod spread;
pub mod stats;
pub mod tls;
pub mod traffic;

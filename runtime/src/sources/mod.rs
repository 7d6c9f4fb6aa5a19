//! Where events are consumed: Kafka ([`kafka`], and its history for backfills in
//! [`kafka_history`]); HTTP push lives in `crate::server`. Sources see the node only through
//! [`SourceEnv`].

pub mod env;
pub mod kafka;
pub mod kafka_history;

pub use env::SourceEnv;

//! Where events are consumed: Kafka ([`kafka`]); HTTP push lives in `crate::server`.

pub mod kafka;
pub mod kafka_history;

//! Kafka consumption for `wafer serve` (see `wafer_runtime::sources::kafka`).

use std::sync::Arc;

use anyhow::Result;
use wafer_runtime::server::App;
use wafer_runtime::view::{KafkaConfig, Manifest};

pub fn start(kafka: &KafkaConfig, manifest: &Manifest, app: Arc<App>) -> Result<()> {
    wafer_runtime::sources::kafka::spawn_consumers(kafka, manifest, app)
}

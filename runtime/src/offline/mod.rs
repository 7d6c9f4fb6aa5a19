//! The offline path: backfills into the online store and point-in-time-correct training data.
//!
//! Zero training/serving skew by construction: offline jobs run the *same* Wasm transform
//! ([`crate::pipeline::StreamView::transform_rows`]), the *same* aggregator (`aggregate::fold` via
//! [`crate::pipeline::StreamView::prepare_rows`]), the same store semantics (tile merge ops, retention)
//! and the same serving read ([`crate::serving::StoredView::read`]) as the online path.
//!
//! - [`event_files`]: streaming JSONL / Parquet event readers with stable positions.
//! - [`event_paths`]: files, directories (Hive partitions, pruned by the spine's times) and globs.
//! - [`backfill`]: history → view → online store, effectively once and resumable.
//! - [`row_cache`]: a view's transformed rows over a set of files, kept to skip the Wasm step next time.
//! - [`spine`]: the (entity, timestamp) rows of a training set.
//! - [`point_in_time`]: the sweep that computes each feature as of each spine time.
//! - [`parquet_out`]: the typed Parquet output.
//! - [`training`]: a whole training-data job (feature references, sources, the columns).
//! - [`shard`]: `--shard I/N`, the spine rows of one entity shard, for running a job on many machines.

mod columns;

pub mod backfill;
pub mod event_files;
pub mod event_paths;
pub mod parquet_out;
pub mod point_in_time;
pub mod row_cache;
pub mod shard;
pub mod spine;
pub mod training;

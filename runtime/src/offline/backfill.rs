//! Backfill: replay history through a view's transform and aggregator into the online store,
//! effectively once.
//!
//! Batches go through [`StreamView::prepare`](crate::pipeline::StreamView::prepare) and a commit with a [`SourceMark`], like live Kafka batches: the
//! batch's tile updates and the source's watermark are written in one atomic store write. A
//! rerun after a crash reads the watermark and resumes there, so nothing is applied twice.
//! - File sources use the source name `backfill:<file name>` (partition 0) and the event's
//!   position in the file (JSONL line index, Parquet row index) as its offset.
//! - Kafka sources (`sources::kafka::backfill`) use the topic's own `(topic, partition)`
//!   watermark, the one live consumption uses, so `wafer serve` afterwards skips exactly what
//!   the backfill applied.

use std::path::Path;

use super::event_files::{EventBatch, EventFile, EventFileError, Progress};
use crate::bindings::types::Event;
use crate::pipeline::{Prepared, StreamView};
use crate::store::{Applied, OnlineStore, SourceMark, StoreError};

/// Failures kept in a report (the counts are always complete).
const MAX_REPORTED: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Events(#[from] EventFileError),
    #[error("online store: {0}")]
    Store(#[from] StoreError),
    #[error(
        "source `{source_name}` was advanced to {watermark} by someone else while this backfill was at {position}; is another backfill of it running?"
    )]
    Concurrent { source_name: String, watermark: i64, position: i64 },
}

/// What a backfill did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BackfillReport {
    /// Offset the run started from (the stored watermark; 0 for a fresh source).
    pub resumed_from: i64,
    /// Watermark after the run.
    pub next_offset: i64,
    /// Events applied by this run, and rows they produced.
    pub events: u64,
    pub rows: u64,
    /// Events that failed (invalid lines, transform errors); the first ones with their reason.
    pub failed: u64,
    pub failures: Vec<(i64, &'static str, String)>,
}

impl BackfillReport {
    /// Add the report of the next file of a multi-file backfill: counts summed, the first reasons
    /// kept, offsets those of the last file (each file has its own watermark).
    pub fn add(&mut self, r: BackfillReport) {
        self.resumed_from = r.resumed_from;
        self.next_offset = r.next_offset;
        self.events += r.events;
        self.rows += r.rows;
        self.failed += r.failed;
        let room = MAX_REPORTED.saturating_sub(self.failures.len());
        self.failures.extend(r.failures.into_iter().take(room));
    }

    pub(crate) fn fail(&mut self, offset: i64, code: &'static str, message: String) {
        self.failed += 1;
        if self.failures.len() < MAX_REPORTED {
            self.failures.push((offset, code, message));
        }
    }
}

/// The watermark source name of a file backfill: `backfill:<file name>`.
pub fn file_source_name(path: &Path) -> String {
    format!(
        "backfill:{}",
        path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
    )
}

/// A transformed batch waiting for its store write.
struct Pending {
    prepared: Prepared,
    mark: SourceMark,
    /// The batch's events (kept to re-fold the part a store applied only in part).
    source_events: Vec<Event>,
    positions: Vec<i64>,
    invalid: Vec<(i64, String)>,
    events: usize,
}

/// Backfill `path` (JSONL or Parquet) into `store` through `view`, resuming from the stored
/// watermark of `source`. `on_progress` is called after every batch.
///
/// Batches are written strictly in order (each write checks and advances the watermark); the
/// transform of batch k+1 runs while batch k's write is in flight.
pub async fn backfill_file(
    view: &StreamView,
    store: &dyn OnlineStore,
    path: &Path,
    source: &str,
    topic: &str,
    batch_size: usize,
    on_progress: &mut (dyn FnMut(Progress, &BackfillReport) + Send),
) -> Result<BackfillReport, BackfillError> {
    let start = store.watermark(&view.id, source, 0).await?.unwrap_or(0);
    let mut file = EventFile::open(path, topic, start)?;
    let mut report = BackfillReport { resumed_from: start, next_offset: start, ..Default::default() };
    let mut batch = EventBatch::default();
    let mut pending: Option<Pending> = None;
    loop {
        let first = file.position();
        let next = if file.next_batch(batch_size, &mut batch)? {
            // Applied even when every line was invalid, so the watermark moves past them.
            let mark = SourceMark {
                source: source.into(),
                partition: 0,
                first_offset: first,
                next_offset: batch.next_position,
            };
            Some((
                mark,
                std::mem::take(&mut batch.events),
                std::mem::take(&mut batch.positions),
                std::mem::take(&mut batch.invalid),
            ))
        } else {
            None
        };
        let done = next.is_none();
        let write = async {
            match pending.take() {
                Some(p) => commit_resuming(view, store, &p).await.map(|a| Some((p, a))),
                None => Ok(None),
            }
        };
        let prepare = async {
            next.map(|(mark, events, positions, invalid)| Pending {
                prepared: view.prepare(&events),
                mark,
                events: events.len(),
                source_events: events,
                positions,
                invalid,
            })
        };
        let (written, prepared) = futures::join!(write, prepare);
        if let Some((p, applied)) = written? {
            if let Applied::Stale { watermark } = applied {
                return Err(BackfillError::Concurrent {
                    source_name: source.into(),
                    watermark,
                    position: p.mark.first_offset,
                });
            }
            for (pos, why) in p.invalid {
                report.fail(pos, "invalid_event", why);
            }
            for f in &p.prepared.failures {
                report.fail(p.positions[f.index.min(p.positions.len().saturating_sub(1))], f.code, f.message.clone());
            }
            report.events += p.events as u64;
            report.rows += p.prepared.rows as u64;
            report.next_offset = p.mark.next_offset;
            on_progress(file.progress(), &report);
        }
        pending = prepared;
        if done {
            break;
        }
    }
    report.failures.sort_by_key(|f| f.0);
    Ok(report)
}

/// Write a batch; where the store holds part of it already (a run killed between its entity
/// writes and its watermark), write the rest. The per-entity replay guards answer
/// [`Applied::Stale`] with the lowest offset some entity lacks: inside the batch, the events from
/// there on are folded again and written with that first offset (entities that have them skip
/// them); at or past the batch's end, every entity had the whole batch (only the watermark was
/// missing, and the store has advanced it). `Stale` at or below the batch's start is another
/// writer's progress, returned for the caller to refuse.
async fn commit_resuming(view: &StreamView, store: &dyn OnlineStore, p: &Pending) -> Result<Applied, StoreError> {
    let mut applied = view.commit(store, &p.prepared, Some(p.mark.clone())).await?;
    let mut from = p.mark.first_offset;
    while let Applied::Stale { watermark } = applied {
        if watermark >= p.mark.next_offset {
            return Ok(Applied::Applied);
        }
        if watermark <= from {
            return Ok(applied);
        }
        from = watermark;
        let rest: Vec<Event> = p
            .source_events
            .iter()
            .zip(&p.positions)
            .filter(|(_, pos)| **pos >= watermark)
            .map(|(e, _)| e.clone())
            .collect();
        let prepared = view.prepare(&rest);
        applied = view.commit(store, &prepared, Some(SourceMark { first_offset: watermark, ..p.mark.clone() })).await?;
    }
    Ok(applied)
}

//! A Kafka source's health: librdkafka's per-partition statistics (once a second, through the
//! consumer's context) and the stall detector built on them.
//!
//! A partition is **stalled** when librdkafka has it assigned and fetching, the broker reports
//! events past what the view has received, nothing of it waits in the local queue, and no event
//! of it arrived for `stall_after` of the consumer's own receiving time (time spent blocked on
//! the store or a paused view does not count). A stall is logged as an error, shown as
//! `wafer_source_stalled{view,partition} 1` and fails `/readyz`; the consumer then recovers by
//! itself: first it seeks the partition to where it stands, and if the partition is still stalled
//! `stall_after` later, the consumer is rebuilt with librdkafka's fetch defaults.
//!
//! librdkafka learns a partition's log end from fetch responses; a broker that answers every
//! fetch empty (as tansu does with a short `fetch.wait.max.ms`) leaves it unknown, so a partition
//! quiet for `stall_after` with an unknown log end is probed with a `ListOffsets` request
//! ([`StallDetector::partitions_to_probe`]), at most once per `stall_after`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::ClientContext;
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::statistics::Statistics;

/// The consumer of a Kafka source.
pub(crate) type KafkaConsumer = StreamConsumer<SourceContext>;

/// What librdkafka last reported about one partition.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PartStat {
    /// Assigned and fetching (`fetch_state` "active").
    pub active: bool,
    /// Log end offset (next offset the broker will write); negative when unknown.
    pub hi: i64,
    /// Next offset librdkafka will fetch; negative when unknown.
    pub next: i64,
    /// Offset after the last message handed to Wafer; negative when none yet.
    pub app: i64,
    /// Committed offset of the group; negative when none.
    pub committed: i64,
    /// Messages fetched but not yet received by Wafer.
    pub queued: i64,
}

impl PartStat {
    /// Events the broker has past everything known to be consumed (0 when unknown).
    pub fn unread(&self, received: Option<i64>) -> i64 {
        let pos = [self.app, self.committed, received.unwrap_or(-1)].into_iter().max().unwrap_or(-1).max(0);
        if self.hi < 0 { 0 } else { (self.hi - pos).max(0) }
    }
}

/// The consumer's context: keeps the latest statistics of the source topic's partitions.
pub(crate) struct SourceContext {
    topic: String,
    stats: Mutex<HashMap<i32, PartStat>>,
}

impl SourceContext {
    pub fn new(topic: &str) -> Self {
        Self { topic: topic.to_owned(), stats: Mutex::new(HashMap::new()) }
    }

    /// The latest statistics of every partition librdkafka knows of.
    pub fn partitions(&self) -> HashMap<i32, PartStat> {
        self.stats.lock().clone()
    }
}

impl ClientContext for SourceContext {
    fn stats(&self, s: Statistics) {
        let Some(t) = s.topics.get(&self.topic) else { return };
        let parts = t
            .partitions
            .values()
            .filter(|p| p.partition >= 0)
            .map(|p| {
                (
                    p.partition,
                    PartStat {
                        active: p.fetch_state == "active",
                        hi: p.hi_offset,
                        next: p.next_offset,
                        app: p.app_offset,
                        committed: p.committed_offset,
                        queued: p.fetchq_cnt,
                    },
                )
            })
            .collect();
        *self.stats.lock() = parts;
    }
}

impl ConsumerContext for SourceContext {}

/// What the consume loop should do about a stalled partition.
#[derive(Debug, PartialEq)]
pub(crate) enum Recovery {
    /// Newly stalled: seek it to this offset (where the view stands), if known.
    Seek(i32, Option<i64>),
    /// Still stalled after the seek: rebuild the consumer.
    Rebuild,
}

struct Watch {
    /// Last event received (moved forward by time spent not receiving).
    last: Instant,
    /// Next offset after the last event received.
    received: Option<i64>,
    /// When the stall was detected (and the seek done).
    stalled: Option<Instant>,
    /// When the broker was last asked for the log end (statistics did not know it).
    probed: Option<Instant>,
}

impl Watch {
    fn new(now: Instant) -> Self {
        Self { last: now, received: None, stalled: None, probed: None }
    }
}

/// Per-partition stall state of one consumer.
pub(crate) struct StallDetector {
    after: Duration,
    parts: HashMap<i32, Watch>,
}

impl StallDetector {
    pub fn new(after: Duration) -> Self {
        Self { after, parts: HashMap::new() }
    }

    /// Events up to `next_offset` (exclusive) of `partition` arrived. True when it was stalled
    /// (it has recovered).
    pub fn received(&mut self, partition: i32, next_offset: i64, now: Instant) -> bool {
        let w = self.parts.entry(partition).or_insert_with(|| Watch::new(now));
        w.last = now;
        w.received = Some(w.received.map_or(next_offset, |r| r.max(next_offset)));
        w.stalled.take().is_some()
    }

    /// The consumer spent `d` not receiving (a long store retry, a paused view): that time does
    /// not count towards a stall.
    pub fn busy(&mut self, d: Duration) {
        for w in self.parts.values_mut() {
            w.last += d;
            if let Some(s) = w.stalled.as_mut() {
                *s += d;
            }
        }
    }

    /// Partitions whose log end the statistics do not know, that are assigned and fetching with
    /// nothing queued and have received nothing for `stall_after`: ask the broker for their log
    /// end (and put it in the statistics given to [`check`](Self::check)). Each is returned at
    /// most once per `stall_after`.
    pub fn partitions_to_probe(&mut self, stats: &HashMap<i32, PartStat>, now: Instant) -> Vec<i32> {
        let mut probe = Vec::new();
        for (&p, s) in stats {
            let w = self.parts.entry(p).or_insert_with(|| Watch::new(now));
            let quiet = now.duration_since(w.last) >= self.after;
            let due = w.probed.is_none_or(|at| now.duration_since(at) >= self.after);
            if s.active && s.hi < 0 && s.queued == 0 && quiet && due {
                w.probed = Some(now);
                probe.push(p);
            }
        }
        probe
    }

    /// Check every partition against the latest statistics; returns the newly stalled ones
    /// (with their unread count) and what to do.
    pub fn check(&mut self, stats: &HashMap<i32, PartStat>, now: Instant) -> (Vec<(i32, i64)>, Vec<Recovery>) {
        let (mut newly, mut actions) = (Vec::new(), Vec::new());
        for (&p, s) in stats {
            let w = self.parts.entry(p).or_insert_with(|| Watch::new(now));
            let unread = s.unread(w.received);
            if !s.active || unread == 0 || s.queued > 0 {
                // Idle, caught up, or events waiting for Wafer: not a stall.
                w.last = now;
                continue;
            }
            match w.stalled {
                None if now.duration_since(w.last) >= self.after => {
                    w.stalled = Some(now);
                    newly.push((p, unread));
                    let at = w.received.or((s.committed >= 0).then_some(s.committed));
                    actions.push(Recovery::Seek(p, at));
                }
                Some(since) if now.duration_since(since) >= self.after => {
                    w.stalled = Some(now);
                    actions.push(Recovery::Rebuild);
                }
                _ => {}
            }
        }
        actions.dedup();
        (newly, actions)
    }

    /// Partitions librdkafka no longer reports (revoked) are forgotten.
    pub fn retain(&mut self, stats: &HashMap<i32, PartStat>) -> Vec<i32> {
        let gone: Vec<i32> = self.parts.keys().filter(|p| !stats.contains_key(p)).copied().collect();
        for p in &gone {
            self.parts.remove(p);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(hi: i64, app: i64, queued: i64) -> PartStat {
        PartStat { active: true, hi, next: 0, app, committed: -1001, queued }
    }

    #[test]
    fn a_partition_with_unread_events_and_nothing_received_stalls_then_escalates() {
        let after = Duration::from_secs(10);
        let mut d = StallDetector::new(after);
        let t0 = Instant::now();
        let stats = HashMap::from([(0, stat(100, -1001, 0)), (1, stat(50, 50, 0))]);
        assert_eq!(d.check(&stats, t0).1, vec![]);
        assert_eq!(d.check(&stats, t0 + Duration::from_secs(9)).1, vec![]);
        let (newly, actions) = d.check(&stats, t0 + Duration::from_secs(10));
        assert_eq!(newly, vec![(0, 100)], "partition 1 is caught up");
        assert_eq!(actions, vec![Recovery::Seek(0, None)]);
        assert_eq!(d.check(&stats, t0 + Duration::from_secs(15)).1, vec![]);
        assert_eq!(d.check(&stats, t0 + Duration::from_secs(20)).1, vec![Recovery::Rebuild]);
        assert!(d.received(0, 10, t0 + Duration::from_secs(21)), "an event ends the stall");
        assert_eq!(d.check(&stats, t0 + Duration::from_secs(22)).1, vec![]);
    }

    #[test]
    fn an_unknown_log_end_is_probed_once_per_period_when_quiet() {
        let after = Duration::from_secs(10);
        let mut d = StallDetector::new(after);
        let t0 = Instant::now();
        let unknown = HashMap::from([(0, stat(-1001, -1001, 0)), (1, stat(50, -1001, 0))]);
        assert_eq!(d.partitions_to_probe(&unknown, t0), Vec::<i32>::new(), "not quiet yet");
        assert_eq!(
            d.partitions_to_probe(&unknown, t0 + Duration::from_secs(10)),
            vec![0],
            "partition 1's end is known"
        );
        assert_eq!(d.partitions_to_probe(&unknown, t0 + Duration::from_secs(15)), Vec::<i32>::new(), "probed 5 s ago");
        assert_eq!(d.partitions_to_probe(&unknown, t0 + Duration::from_secs(20)), vec![0]);
        // The probe's answer makes the stall visible.
        let probed = HashMap::from([(0, stat(1, -1001, 0))]);
        assert_eq!(d.check(&probed, t0 + Duration::from_secs(20)).0, vec![(0, 1)]);
    }

    #[test]
    fn queued_events_and_busy_time_are_not_a_stall() {
        let mut d = StallDetector::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let queued = HashMap::from([(0, stat(100, -1001, 5))]);
        d.check(&queued, t0);
        assert_eq!(d.check(&queued, t0 + Duration::from_secs(30)).1, vec![], "Wafer is behind, not the fetch");
        let unread = HashMap::from([(0, stat(100, -1001, 0))]);
        d.check(&unread, t0 + Duration::from_secs(30));
        d.busy(Duration::from_secs(8));
        assert_eq!(d.check(&unread, t0 + Duration::from_secs(39)).1, vec![], "8 s were spent on the store");
        assert_eq!(d.check(&unread, t0 + Duration::from_secs(48)).1.len(), 1);
    }
}

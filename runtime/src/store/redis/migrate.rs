//! One-shot conversion of layout v1 (`wafer:{<view>}:e:<entity>`, one slot per view; every batch
//! atomic with its watermark) to layout v2 (one slot per entity, per-entity replay guards).
//!
//! Run with the view's nodes stopped (`wafer migrate-store`). Each v1 key is copied (`DUMP` +
//! `RESTORE … REPLACE`, keeping its TTL) to its v2 name and then deleted, so a rerun after an
//! interruption continues where it stopped. Every migrated entity hash gets a guard
//! `o:<source>:<partition>` equal to the view's watermark of that partition: under v1 a batch and
//! its watermark were applied together, so the entity holds exactly the events below it.

use std::collections::HashMap;

use redis::Value as RValue;

use super::{RedisStore, glob_escape, scan_page};
use crate::store::StoreError;

/// What a migration did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Entity hashes moved.
    pub entities: u64,
    /// Sketch (HLL) keys moved.
    pub sketches: u64,
}

impl RedisStore {
    /// Move every v1 entity key (of every view, or of `view` only) to the v2 layout.
    pub async fn migrate_v1(&self, view: Option<&str>) -> Result<Migration, StoreError> {
        let pattern = match view {
            Some(v) => format!("wafer:{{{}}}:e:*", glob_escape(v)),
            None => "wafer:{*}:e:*".to_string(),
        };
        let mut done = Migration::default();
        let mut guards: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        for mut node in super::nodes(&self.conn).await? {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys) = scan_page(&mut node, cursor, &pattern).await?;
                for key in keys {
                    self.migrate_key(&key, &mut guards, &mut done).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(done)
    }

    async fn migrate_key(
        &self,
        key: &str,
        guards: &mut HashMap<String, Vec<(String, i64)>>,
        done: &mut Migration,
    ) -> Result<(), StoreError> {
        // wafer:{<view>}:e:<rest>
        let Some((view, rest)) = key.strip_prefix("wafer:{").and_then(|k| k.split_once("}:e:")) else {
            return Ok(());
        };
        let mut c = self.conn.clone();
        let kind: String = redis::cmd("TYPE").arg(key).query_async(&mut c).await?;
        let (new_key, is_hash) = match kind.as_str() {
            "hash" => (Self::entity_key(view, rest), true),
            // A sketch: `<entity>|t:<g>:<start>:<column>:h` (the entity may itself contain `|t:`).
            "string" => match rest.rfind("|t:") {
                Some(i) => (format!("{}|{}", Self::entity_key(view, &rest[..i]), &rest[i + 1..]), false),
                None => return Ok(()),
            },
            _ => return Ok(()),
        };
        let dump: Option<Vec<u8>> = redis::cmd("DUMP").arg(key).query_async(&mut c).await?;
        let Some(dump) = dump else { return Ok(()) };
        let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut c).await?;
        let _: RValue =
            redis::cmd("RESTORE").arg(&new_key).arg(ttl.max(0)).arg(dump).arg("REPLACE").query_async(&mut c).await?;
        if is_hash {
            if !guards.contains_key(view) {
                let g = self.v1_watermarks(view).await?;
                guards.insert(view.to_string(), g);
            }
            for (field, wm) in &guards[view] {
                let _: RValue = redis::cmd("HSET").arg(&new_key).arg(field).arg(*wm).query_async(&mut c).await?;
            }
            done.entities += 1;
        } else {
            done.sketches += 1;
        }
        let _: RValue = redis::cmd("UNLINK").arg(key).query_async(&mut c).await?;
        Ok(())
    }

    /// The view's watermarks as guard fields: `(o:<source>:<partition>, next offset)`.
    async fn v1_watermarks(&self, view: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let prefix = format!("wafer:{{{view}}}:wm:");
        let pattern = format!("{}*", glob_escape(&prefix));
        let mut c = self.conn.clone();
        let mut out = Vec::new();
        for mut node in super::nodes(&self.conn).await? {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys) = scan_page(&mut node, cursor, &pattern).await?;
                for k in keys {
                    let Some(sp) = k.strip_prefix(&prefix) else { continue };
                    let wm: Option<i64> = redis::cmd("GET").arg(&k).query_async(&mut c).await?;
                    if let Some(wm) = wm {
                        out.push((format!("o:{sp}"), wm));
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(out)
    }
}

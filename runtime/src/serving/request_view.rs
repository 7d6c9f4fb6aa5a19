//! Request (on-demand) views: a request transform called once per request with every entity
//! batched, after the host prefetched the stored features it declared in `reads`.

use crate::bindings::types::{Feature, ValueType};
use crate::bindings::{RequestInput, StoredFeature};
use crate::transform::request::EntityResult;
use crate::transform::{RequestWorker, Transform, TransformError};
use crate::{FeatureSpec, WorldKind};

/// A stored feature a request view reads, resolved against the catalog.
#[derive(Debug, Clone)]
pub struct Read {
    /// `view:feature` as declared by the transform.
    pub name: String,
    /// Index of the stored view in the catalog.
    pub view: usize,
    pub feature: super::stored::FeatureRef,
}

pub struct RequestView {
    pub name: String,
    pub transform: Transform,
    /// Request params, as declared.
    pub params: Vec<FeatureSpec>,
    /// Stored features it reads, in declared order.
    pub reads: Vec<Read>,
    /// Entity type whose key is passed as `entity-key` (that of the first read view).
    pub entity: Option<String>,
    workers: crate::transform::pool::AsyncPool<RequestWorker>,
    /// The tenant's share of the node's cores, shared by all its views.
    compute: crate::transform::pool::ComputeShare,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestViewError {
    #[error("request view `{view}`: {transform} is not a request transform")]
    NotRequest { view: String, transform: String },
    #[error("request view `{view}` reads `{read}`: {problem}")]
    BadRead { view: String, read: String, problem: String },
}

impl RequestView {
    /// `resolve(view, feature)` finds a stored feature: `(view index, ref, entity type)`.
    pub fn new(
        name: &str,
        transform: Transform,
        resolve: impl Fn(&str, &str) -> Result<(usize, super::stored::FeatureRef, String), String>,
    ) -> Result<Self, RequestViewError> {
        if transform.kind() != WorldKind::Request {
            return Err(RequestViewError::NotRequest { view: name.into(), transform: transform.name().into() });
        }
        let info = transform.info().clone();
        let mut reads = Vec::with_capacity(info.reads.len());
        let mut entity = None;
        for r in &info.reads {
            let bad = |problem: String| RequestViewError::BadRead { view: name.into(), read: r.clone(), problem };
            let (v, f) = r.split_once(':').ok_or_else(|| bad("expected `view:feature`".into()))?;
            let (view, feature, ent) = resolve(v, f).map_err(bad)?;
            match &entity {
                None => entity = Some(ent),
                Some(e) if *e != ent => {
                    return Err(bad(format!("reads views of different entities (`{e}` and `{ent}`)")));
                }
                Some(_) => {}
            }
            reads.push(Read { name: r.clone(), view, feature });
        }
        Ok(Self {
            name: name.into(),
            params: info.params.clone(),
            reads,
            entity,
            workers: crate::transform::pool::AsyncPool::new(transform.limits().max_instances),
            compute: crate::transform::pool::ComputeShare::unlimited(),
            transform,
        })
    }

    /// Run this view's calls within `share` (its tenant's, shared by all its views).
    pub fn with_compute(mut self, share: crate::transform::pool::ComputeShare) -> Self {
        self.compute = share;
        self
    }

    /// The output's position and type, if the transform declares it.
    pub fn output(&self, feature: &str) -> Option<(usize, ValueType)> {
        self.transform
            .info()
            .outputs
            .iter()
            .position(|o| o.name == feature)
            .map(|i| (i, self.transform.info().outputs[i].value_type))
    }

    /// Call the transform on every input, on the caller's task, under its deadline (a long call
    /// yields at every epoch tick). Waits for a slot of the tenant's compute share, then for an
    /// instance when the view's cap is reached.
    pub async fn compute(&self, inputs: &[RequestInput]) -> Result<Vec<EntityResult>, TransformError> {
        let _slot = self.compute.acquire().await;
        let mut w = self
            .workers
            .take(|| self.transform.request_worker().map_err(|e| TransformError::Instantiate(e.to_string())))
            .await?;
        w.compute_async(inputs).await
    }
}

/// Build a stored-feature input value.
pub fn stored_feature(name: &str, served: &super::stored::Served) -> StoredFeature {
    StoredFeature { name: name.to_owned(), value: served.value.clone(), event_time_ms: served.event_time_ms }
}

/// Find an output by name in a result (outputs are usually in declared order: try `hint` first).
pub fn pick<'a>(features: &'a [Feature], name: &str, hint: usize) -> Option<&'a Feature> {
    match features.get(hint) {
        Some(f) if f.name == name => Some(f),
        _ => features.iter().find(|f| f.name == name),
    }
}

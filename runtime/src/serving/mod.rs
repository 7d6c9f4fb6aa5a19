//! **Where features are served**: resolving `view:feature` names against the catalog of views,
//! fetching stored features (all views of a request read concurrently over one multiplexed
//! connection), running request views, and assembling one row per entity. The native endpoint
//! and the Feast-compatible endpoint (`feast.rs`) are thin shapes over [`Catalog::get`].

pub mod error;
pub mod feast;
pub mod request_view;
pub mod stored;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use serde_json::Value as Json;

use crate::Feature;
use crate::bindings::RequestInput;
use crate::bindings::types::{Value, ValueType};
use crate::store::OnlineStore;
use crate::transform::TransformError;
use crate::transform::json_out::value_from_json;
pub use error::ServeError;
pub use request_view::RequestView;
pub use stored::{FeatureRef, Served, Status, StoredView};

#[derive(Debug, Clone, Copy)]
enum ViewId {
    Stored(usize),
    Request(usize),
}

/// Every servable view of a tenant, by name, and its feature services.
#[derive(Default)]
pub struct Catalog {
    stored: Vec<Arc<StoredView>>,
    request: Vec<Arc<RequestView>>,
    by_name: HashMap<String, ViewId>,
    services: HashMap<String, Vec<String>>,
    /// Resolved plans by default view ("" for none) and feature list (clients repeat the same
    /// few lists: resolving once saves a dozen allocations per request).
    plans: RwLock<PlanCache>,
}

/// Resolved plans by default view, then by feature list.
type PlanCache = HashMap<String, HashMap<Vec<String>, Arc<Plan>>>;

/// Most plans kept; past it the cache starts over (a client sending ever-new lists).
const MAX_CACHED_PLANS: usize = 1024;

/// What one request needs, resolved from its feature names.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Output columns, in request order.
    columns: Vec<Column>,
    /// One fetch per stored view involved.
    groups: Vec<Group>,
    /// Request views involved.
    calls: Vec<Call>,
    /// Feature names in request order (`view:feature`).
    pub names: Vec<String>,
}

#[derive(Debug, Clone)]
enum Column {
    /// `take`: the last column serving this value (it is moved out, not copied).
    Stored {
        group: usize,
        pos: usize,
        take: bool,
    },
    Request {
        call: usize,
        out: usize,
    },
}

#[derive(Debug, Clone)]
struct Group {
    view: usize,
    refs: Vec<FeatureRef>,
    /// The stored fields to read when they do not depend on the request time (no aggregations).
    fields: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
struct Call {
    rv: usize,
    /// (group, position) of each declared read.
    reads: Vec<(usize, usize)>,
    /// Output names requested from this view (index = `out` of its columns).
    outputs: Vec<(String, usize)>,
}

/// The entity keys of a request: one list for every entity type, or a column per entity type.
pub enum Entities<'a> {
    All(&'a [String]),
    ByType(&'a HashMap<String, Vec<String>>),
}

impl Entities<'_> {
    fn keys(&self, entity: &str) -> Result<&[String], ServeError> {
        match self {
            Entities::All(k) => Ok(k),
            Entities::ByType(m) => {
                m.get(entity).map(Vec::as_slice).ok_or_else(|| ServeError::MissingEntity(entity.into()))
            }
        }
    }
}

/// A resolved request: rows × columns of served values.
pub struct Table {
    pub rows: Vec<Vec<Served>>,
}

impl Catalog {
    pub fn add_stored(&mut self, v: Arc<StoredView>) {
        self.by_name.insert(v.name().to_owned(), ViewId::Stored(self.stored.len()));
        self.stored.push(v);
    }

    pub fn add_request(&mut self, v: Arc<RequestView>) {
        self.by_name.insert(v.name.clone(), ViewId::Request(self.request.len()));
        self.request.push(v);
    }

    pub fn add_service(&mut self, name: &str, features: Vec<String>) {
        self.services.insert(name.to_owned(), features);
    }

    pub fn stored_views(&self) -> &[Arc<StoredView>] {
        &self.stored
    }

    pub fn request_views(&self) -> &[Arc<RequestView>] {
        &self.request
    }

    /// Resolve a stored feature for a request view's `reads`: (view index, ref, entity type).
    pub fn resolve_stored(&self, view: &str, feature: &str) -> Result<(usize, FeatureRef, String), String> {
        match self.by_name.get(view) {
            Some(ViewId::Stored(i)) => {
                let v = &self.stored[*i];
                let r = v.resolve(feature).ok_or_else(|| format!("view `{view}` has no feature `{feature}`"))?;
                Ok((*i, r, v.spec.entity.clone()))
            }
            Some(ViewId::Request(_)) => {
                Err(format!("`{view}` is a request view; request views can only read stored views"))
            }
            None => Err(format!("no view `{view}` (request views must be declared after the views they read)")),
        }
    }

    /// Whether `name` is the entity type (join key) of a stored view.
    pub fn is_entity(&self, name: &str) -> bool {
        self.stored.iter().any(|v| v.spec.entity == name)
    }

    /// A stored view by name.
    pub fn stored_view(&self, name: &str) -> Option<&Arc<StoredView>> {
        match self.by_name.get(name)? {
            ViewId::Stored(i) => self.stored.get(*i),
            ViewId::Request(_) => None,
        }
    }

    /// Whether `name` is a request view.
    pub fn is_request_view(&self, name: &str) -> bool {
        matches!(self.by_name.get(name), Some(ViewId::Request(_)))
    }

    /// The features of a feature service.
    pub fn service(&self, name: &str) -> Result<&[String], ServeError> {
        self.services.get(name).map(Vec::as_slice).ok_or_else(|| ServeError::UnknownService(name.into()))
    }

    /// The declared type of a `view:feature` (for typed outputs such as Parquet or OpenAPI).
    pub fn value_type(&self, name: &str) -> Option<ValueType> {
        let (v, f) = name.split_once(':')?;
        match self.by_name.get(v)? {
            ViewId::Stored(i) => Some(self.stored[*i].value_type(self.stored[*i].resolve(f)?)),
            ViewId::Request(i) => self.request[*i].output(f).map(|(_, t)| t),
        }
    }

    /// [`Self::plan`], resolved once per distinct feature list and default view, then shared.
    pub fn plan_shared(&self, features: &[String], default_view: Option<&str>) -> Result<Arc<Plan>, ServeError> {
        let dv = default_view.unwrap_or("");
        if let Some(p) = self.plans.read().get(dv).and_then(|m| m.get(features)) {
            return Ok(p.clone());
        }
        let plan = Arc::new(self.plan(features, default_view)?);
        let mut plans = self.plans.write();
        if plans.values().map(HashMap::len).sum::<usize>() >= MAX_CACHED_PLANS {
            plans.clear();
        }
        plans.entry(dv.to_owned()).or_default().insert(features.to_vec(), plan.clone());
        Ok(plan)
    }

    /// Resolve feature names (`view:feature`; a bare `feature` is looked up in `default_view`).
    /// Every unknown view, then every unknown feature, is reported at once.
    pub fn plan(&self, features: &[String], default_view: Option<&str>) -> Result<Plan, ServeError> {
        if features.is_empty() {
            return Err(ServeError::Invalid("no features requested".into()));
        }
        let mut plan = Plan {
            columns: Vec::with_capacity(features.len()),
            groups: Vec::new(),
            calls: Vec::new(),
            names: Vec::with_capacity(features.len()),
        };
        let (mut unknown_views, mut unknown_features) = (Vec::new(), Vec::new());
        for name in features {
            let (view, feature) = match (name.split_once(':'), default_view) {
                (Some((v, f)), _) => (v, f),
                (None, Some(v)) => (v, name.as_str()),
                (None, None) => return Err(ServeError::Invalid(format!("feature `{name}`: expected `view:feature`"))),
            };
            let full = format!("{view}:{feature}");
            match self.by_name.get(view) {
                None => {
                    if !unknown_views.iter().any(|v| v == view) {
                        unknown_views.push(view.to_owned());
                    }
                }
                Some(ViewId::Stored(i)) => match self.stored[*i].resolve(feature) {
                    None => unknown_features.push(full.clone()),
                    Some(r) => {
                        let (group, pos) = plan.fetch(*i, r);
                        plan.columns.push(Column::Stored { group, pos, take: false });
                    }
                },
                Some(ViewId::Request(i)) => match self.request[*i].output(feature) {
                    None => unknown_features.push(full.clone()),
                    Some(_) => {
                        let call = plan.call(*i, &self.request[*i]);
                        let outs = &mut plan.calls[call].outputs;
                        let out = outs.len();
                        outs.push((feature.to_owned(), self.request[*i].output(feature).map_or(0, |o| o.0)));
                        plan.columns.push(Column::Request { call, out });
                    }
                },
            }
            plan.names.push(full);
        }
        if !unknown_views.is_empty() {
            return Err(ServeError::UnknownViews(unknown_views));
        }
        if !unknown_features.is_empty() {
            return Err(ServeError::UnknownFeatures(unknown_features));
        }
        for g in &mut plan.groups {
            g.fields = self.stored[g.view].fixed_fields(&g.refs);
        }
        let mut used = std::collections::HashSet::new();
        for c in plan.columns.iter_mut().rev() {
            if let Column::Stored { group, pos, take } = c {
                *take = used.insert((*group, *pos));
            }
        }
        Ok(plan)
    }

    /// Serve a planned request for `n` entity rows at time `t`.
    pub async fn get(
        &self,
        store: &dyn OnlineStore,
        plan: &Plan,
        entities: &Entities<'_>,
        request_data: &HashMap<String, Vec<Json>>,
        t: i64,
    ) -> Result<Table, ServeError> {
        // Check everything the caller sent before touching the store.
        let mut keys: Vec<&[String]> = Vec::with_capacity(plan.groups.len());
        for g in &plan.groups {
            keys.push(entities.keys(&self.stored[g.view].spec.entity)?);
        }
        let n = match (keys.first(), entities) {
            (Some(k), _) => k.len(),
            (None, Entities::All(k)) => k.len(),
            (None, Entities::ByType(m)) => m.values().next().map_or(0, Vec::len),
        };
        if n == 0 {
            return Err(ServeError::Invalid("no entities".into()));
        }
        if let Some(k) = keys.iter().find(|k| k.len() != n) {
            return Err(ServeError::Invalid(format!("entity key columns differ in length ({} and {n})", k.len())));
        }
        let params: Vec<Vec<Vec<Feature>>> = plan
            .calls
            .iter()
            .map(|c| request_params(&self.request[c.rv], request_data, n))
            .collect::<Result<_, _>>()?;

        // One concurrent read per stored view (pipelined on the store's connection).
        let fetched: Vec<Vec<Vec<Served>>> =
            futures::future::try_join_all(plan.groups.iter().zip(&keys).map(|(g, k)| {
                let view = &self.stored[g.view];
                let refs = &g.refs;
                async move {
                    let ks: Vec<&str> = k.iter().map(String::as_str).collect();
                    match &g.fields {
                        Some(fields) => view.read_fields(store, &ks, refs, fields, &[], t).await,
                        None => view.read(store, &ks, refs, t).await,
                    }
                }
            }))
            .await?;

        // Request views: one call each, every entity batched.
        let mut computed: Vec<Vec<Vec<Feature>>> = Vec::with_capacity(plan.calls.len());
        for (c, params) in plan.calls.iter().zip(params) {
            let rv = &self.request[c.rv];
            let ekeys = match &rv.entity {
                Some(e) => Some(entities.keys(e)?),
                None => None,
            };
            let inputs: Vec<RequestInput> = params
                .into_iter()
                .enumerate()
                .map(|(row, params)| RequestInput {
                    entity_key: ekeys.map_or_else(String::new, |k| k[row].clone()),
                    request_time_ms: t,
                    params,
                    stored: c
                        .reads
                        .iter()
                        .zip(&rv.reads)
                        .map(|(&(g, p), r)| request_view::stored_feature(&r.name, &fetched[g][row][p]))
                        .collect(),
                })
                .collect();
            let results = rv.compute(&inputs).await.map_err(|error| ServeError::Transform {
                view: rv.name.clone(),
                transform: rv.transform.name().into(),
                error,
            })?;
            let mut rows = Vec::with_capacity(n);
            for (row, r) in results.into_iter().enumerate() {
                match r {
                    Ok(f) => rows.push(f),
                    Err(TransformError::BadInput(message)) => {
                        return Err(ServeError::Rejected {
                            view: rv.name.clone(),
                            entity: inputs[row].entity_key.clone(),
                            message,
                        });
                    }
                    Err(error) => {
                        return Err(ServeError::Transform {
                            view: rv.name.clone(),
                            transform: rv.transform.name().into(),
                            error,
                        });
                    }
                }
            }
            computed.push(rows);
        }

        let mut fetched = fetched;
        let rows = (0..n)
            .map(|row| {
                plan.columns
                    .iter()
                    .map(|c| match *c {
                        Column::Stored { group, pos, take: true } => {
                            std::mem::replace(&mut fetched[group][row][pos], Served::MISSING)
                        }
                        Column::Stored { group, pos, take: false } => fetched[group][row][pos].clone(),
                        Column::Request { call, out, .. } => {
                            let (name, hint) = &plan.calls[call].outputs[out];
                            match request_view::pick(&computed[call][row], name, *hint) {
                                Some(f) if f.value != Value::Null => {
                                    Served { value: f.value.clone(), status: Status::Present, event_time_ms: Some(t) }
                                }
                                _ => Served::MISSING,
                            }
                        }
                    })
                    .collect()
            })
            .collect();
        Ok(Table { rows })
    }
}

impl Plan {
    fn fetch(&mut self, view: usize, r: FeatureRef) -> (usize, usize) {
        let group = match self.groups.iter().position(|g| g.view == view) {
            Some(g) => g,
            None => {
                self.groups.push(Group { view, refs: Vec::new(), fields: None });
                self.groups.len() - 1
            }
        };
        let refs = &mut self.groups[group].refs;
        let pos = match refs.iter().position(|x| *x == r) {
            Some(p) => p,
            None => {
                refs.push(r);
                refs.len() - 1
            }
        };
        (group, pos)
    }

    fn call(&mut self, rv: usize, view: &RequestView) -> usize {
        if let Some(c) = self.calls.iter().position(|c| c.rv == rv) {
            return c;
        }
        let reads = view.reads.iter().map(|r| self.fetch(r.view, r.feature)).collect();
        self.calls.push(Call { rv, reads, outputs: Vec::new() });
        self.calls.len() - 1
    }
}

/// Typed request params of one request view for every row; every missing param is named at once.
fn request_params(
    rv: &RequestView,
    data: &HashMap<String, Vec<Json>>,
    n: usize,
) -> Result<Vec<Vec<Feature>>, ServeError> {
    let missing: Vec<String> =
        rv.params.iter().filter(|p| !data.contains_key(&p.name)).map(|p| p.name.clone()).collect();
    if !missing.is_empty() {
        return Err(ServeError::MissingRequestData { view: rv.name.clone(), params: missing });
    }
    let mut rows: Vec<Vec<Feature>> = (0..n).map(|_| Vec::with_capacity(rv.params.len())).collect();
    for p in &rv.params {
        let col = &data[&p.name];
        if col.len() != n {
            return Err(ServeError::BadRequestData {
                param: p.name.clone(),
                row: col.len().min(n),
                message: format!("has {} values for {n} entities", col.len()),
            });
        }
        for (row, j) in col.iter().enumerate() {
            let value = match value_from_json(p.value_type, j) {
                Some(Value::Null) if !p.nullable => {
                    return Err(ServeError::BadRequestData {
                        param: p.name.clone(),
                        row,
                        message: "must not be null".into(),
                    });
                }
                Some(v) => v,
                None => {
                    return Err(ServeError::BadRequestData {
                        param: p.name.clone(),
                        row,
                        message: format!("expected {}, got {j}", p.value_type.as_str()),
                    });
                }
            };
            rows[row].push(Feature { name: p.name.clone(), value });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::ViewSpec;

    fn catalog() -> Catalog {
        let spec = ViewSpec {
            name: "user_stats".into(),
            entity: "user".into(),
            latest: vec![("a".into(), ValueType::Int64), ("b".into(), ValueType::Text)],
            aggs: Vec::new(),
            column_types: Vec::new(),
            ttl_ms: 1000,
            breaker: Default::default(),
        };
        let mut c = Catalog::default();
        c.add_stored(Arc::new(StoredView::new("t", spec)));
        c
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shared_plans_are_resolved_once_per_list_and_default_view() {
        let c = catalog();
        let full = names(&["user_stats:b", "user_stats:a"]);
        let p1 = c.plan_shared(&full, None).unwrap();
        let p2 = c.plan_shared(&full, None).unwrap();
        assert!(Arc::ptr_eq(&p1, &p2), "the same list reuses its plan");
        assert_eq!(p1.names, full);
        // Bare names resolve against the default view: a different cache entry, same names out.
        let bare = c.plan_shared(&names(&["b", "a"]), Some("user_stats")).unwrap();
        assert_eq!(bare.names, full);
        assert!(matches!(c.plan_shared(&names(&["b"]), None), Err(ServeError::Invalid(_))));
        // Errors are not cached: an unknown feature is reported every time.
        for _ in 0..2 {
            assert!(
                matches!(c.plan_shared(&names(&["user_stats:zz"]), None), Err(ServeError::UnknownFeatures(f)) if f == ["user_stats:zz"])
            );
        }
    }

    #[test]
    fn plan_cache_is_bounded() {
        let c = catalog();
        for i in 0..MAX_CACHED_PLANS + 10 {
            let list: Vec<String> = std::iter::repeat_n("user_stats:a".to_string(), 1 + i % 50)
                .chain([format!("user_stats:{}", if i % 2 == 0 { "a" } else { "b" })])
                .chain(std::iter::repeat_n("user_stats:b".to_string(), i / 50))
                .collect();
            c.plan_shared(&list, None).unwrap();
        }
        assert!(c.plans.read().values().map(HashMap::len).sum::<usize>() <= MAX_CACHED_PLANS);
    }
}

//! `CorrelatorActor`: one per org, on the node that owns the org (placement, as for sessions).
//! Told that alerts wait, it places each into an open incident or a new one. One actor per org
//! makes the org's correlation sequential on its node; the transaction lock it correlates
//! under makes it sequential across nodes too, while a placement change is in flight.
//!
//! An alert joins an open incident when it arrived within the window of the incident's last
//! alert and matches it: the same alert, group or service; a connected service in the service
//! graph (through the [`Topology`] seam, when the node has one); or text close enough by the
//! in-process embeddings. A resolution joins the open incident holding its alert.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aurora_models::embeddings::EmbeddingPool;
use aurora_storage::entities::incident_alerts;
use aurora_storage::incidents::correlate::{CorrelationTx, Known, OpenIncident, Place};
use aurora_storage::incidents::Incidents;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use uuid::Uuid;

use crate::{ActorSnapshot, SnapshotOwner};

/// Whether two services are connected in an org's service graph: the third matcher, which the
/// service-graph capability provides.
pub trait Topology: Send + Sync {
    fn connected<'a>(&'a self, org_id: Uuid, a: &'a str, b: &'a str) -> BoxFuture<'a, bool>;
}

#[derive(Clone)]
pub struct CorrelationConfig {
    /// How long after an incident's last alert a new one may still join it.
    pub window: Duration,
    /// Least cosine similarity of texts for a join on text alone.
    pub similarity: f32,
    /// An incident whose alerts are all resolved resolves.
    pub resolve_when_clear: bool,
    /// Most analyses of one org waiting at once (beyond it, new incidents are not analysed).
    pub max_queued: u32,
}

impl CorrelationConfig {
    /// [`CorrelationConfig::window`] as the timestamps' duration.
    pub fn window_span(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX)
    }
}

/// What every correlator of a node shares.
#[derive(Clone)]
pub struct CorrelatorShared {
    pub incidents: Incidents,
    pub embeddings: Option<EmbeddingPool>,
    pub topology: Option<Arc<dyn Topology>>,
    pub config: CorrelationConfig,
    /// Called when incidents were opened (their analyses are queued).
    pub on_opened: Arc<dyn Fn() + Send + Sync>,
}

pub struct CorrelatorArgs {
    pub org_id: Uuid,
    pub shared: CorrelatorShared,
}

pub enum CorrelatorMsg {
    /// Alerts of the org wait.
    Nudge,
    /// Place what waits (sent by the actor to itself: nudges that arrive before it is
    /// handled are covered by it, so a storm of deliveries costs one pass, not one each).
    Pass,
    Status(RpcReplyPort<ActorSnapshot>),
}

impl ractor::Message for CorrelatorMsg {}

pub struct CorrelatorState {
    _live: crate::metrics::Live,
    args: CorrelatorArgs,
    started_at: DateTime<Utc>,
    /// Embeddings of open incidents' texts, by incident.
    vectors: HashMap<Uuid, Vec<f32>>,
    /// The open incidents as the last pass left them (see `CorrelationTx::load_open`).
    known: Known,
    /// A `Pass` is in the mailbox.
    pass_queued: bool,
    placed: u64,
    last_pass: Option<DateTime<Utc>>,
}

pub struct CorrelatorActor;

/// Alerts placed per transaction.
const BATCH: u64 = 500;
/// Most texts of each kind a pass embeds up front (it holds the org's correlation meanwhile).
const PREFETCH: usize = 256;

impl Actor for CorrelatorActor {
    type Msg = CorrelatorMsg;
    type State = CorrelatorState;
    type Arguments = CorrelatorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<CorrelatorMsg>,
        args: CorrelatorArgs,
    ) -> Result<CorrelatorState, ActorProcessingErr> {
        // Whatever waited before this actor existed.
        let _ = myself.cast(CorrelatorMsg::Pass);
        Ok(CorrelatorState {
            _live: crate::metrics::Live::new("correlator"),
            args,
            started_at: Utc::now(),
            vectors: HashMap::new(),
            known: Known::new(),
            pass_queued: true,
            placed: 0,
            last_pass: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<CorrelatorMsg>,
        msg: CorrelatorMsg,
        state: &mut CorrelatorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            // Whatever a nudge announces was committed before it was sent, so a pass that
            // starts after the nudge is handled sees it.
            CorrelatorMsg::Nudge => {
                if !state.pass_queued {
                    state.pass_queued = true;
                    myself.cast(CorrelatorMsg::Pass)?;
                }
            }
            CorrelatorMsg::Pass => loop {
                state.pass_queued = false;
                let placed = Box::pin(pass(state)).await?;
                state.placed += placed as u64;
                state.last_pass = Some(Utc::now());
                if (placed as u64) < BATCH {
                    break;
                }
            },
            CorrelatorMsg::Status(reply) => {
                let mut snap = ActorSnapshot::new(
                    "correlator",
                    state.args.org_id.to_string(),
                    "idle",
                    state.started_at,
                );
                snap.owner = Some(SnapshotOwner {
                    org_id: state.args.org_id,
                    user_id: None,
                });
                let _ = reply.send(snap);
            }
        }
        Ok(())
    }
}

/// One transaction: places up to [`BATCH`] waiting alerts. Returns how many.
async fn pass(state: &mut CorrelatorState) -> Result<usize, ActorProcessingErr> {
    let shared = state.args.shared.clone();
    let org_id = state.args.org_id;
    let mut tx = shared
        .incidents
        .correlation(org_id, shared.config.resolve_when_clear)
        .await?
        .queue_limit(shared.config.max_queued);
    let pending = tx.pending(BATCH).await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let window = shared.config.window_span();
    // Taken, not cloned: a pass that fails leaves nothing to reuse, and the next reads all.
    tx.load_open(window, std::mem::take(&mut state.known))
        .await?;
    state
        .vectors
        .retain(|id, _| tx.incidents.iter().any(|i| i.row.id == *id));
    let mut texts = prefetch(state, &tx, &pending).await;
    for alert in &pending {
        let place = decide(state, &tx, alert, &mut texts).await;
        tx.place(alert, place).await?;
    }
    // Incidents this pass opened keep the vectors it embedded for them.
    if !texts.is_empty() {
        for inc in &tx.incidents {
            if let std::collections::hash_map::Entry::Vacant(slot) = state.vectors.entry(inc.row.id)
            {
                if let Some(v) = texts.remove(&inc.text()) {
                    slot.insert(v);
                }
            }
        }
    }
    let mut done = tx.commit(pending.len()).await?;
    state.known = std::mem::take(&mut done.known);
    tracing::debug!(%org_id, placed = done.placed, opened = done.opened.len(), "correlated");
    shared.incidents.feed().publish(done.events).await;
    if !done.opened.is_empty() {
        (shared.on_opened)();
    }
    Ok(pending.len())
}

/// Embeds, in one batch, the texts a pass will likely compare: each waiting firing alert that
/// no open incident matches by its fields, the incident it would open, and the open incidents
/// not embedded yet. One forward over many texts costs far less than one per alert. Returns
/// the vectors by text; a failure leaves it empty (texts are then embedded as needed).
async fn prefetch(
    state: &mut CorrelatorState,
    tx: &CorrelationTx,
    pending: &[incident_alerts::Model],
) -> HashMap<String, Vec<f32>> {
    let Some(pool) = state.args.shared.embeddings.clone() else {
        return HashMap::new();
    };
    let open = &tx.incidents;
    let window = state.args.shared.config.window_span();
    let mut wanted: Vec<String> = Vec::new();
    for alert in pending.iter().filter(|a| a.status == "firing") {
        if wanted.len() >= PREFETCH {
            break;
        }
        if !tx.related(alert).is_empty() {
            continue;
        }
        wanted.push(alert_text(alert));
        wanted.push(OpenIncident::text_of(
            &alert.title,
            alert.service.as_deref(),
        ));
    }
    if wanted.is_empty() {
        return HashMap::new();
    }
    let now = Utc::now();
    wanted.extend(
        open.iter()
            .filter(|i| i.takes_alerts())
            .filter(|i| now - i.row.last_alert_at <= window)
            .filter(|i| !state.vectors.contains_key(&i.row.id))
            .map(|i| i.text())
            .take(PREFETCH),
    );
    wanted.sort();
    wanted.dedup();
    match pool.embed(wanted.clone()).await {
        Ok(vectors) => wanted.into_iter().zip(vectors).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot embed alerts for correlation");
            HashMap::new()
        }
    }
}

async fn decide(
    state: &mut CorrelatorState,
    tx: &CorrelationTx,
    alert: &incident_alerts::Model,
    texts: &mut HashMap<String, Vec<f32>>,
) -> Place {
    let open = &tx.incidents;
    let holders = tx.holders(alert);
    let newest =
        |set: &mut dyn Iterator<Item = usize>| set.max_by_key(|n| open[*n].row.last_alert_at);
    if alert.status == "resolved" {
        // The newest open incident holding this alert, regardless of the window.
        return newest(&mut holders.iter().copied()).map_or(Place::Nowhere, Place::Join);
    }
    let window = state.args.shared.config.window_span();
    // Open to new alerts: investigating or analyzed, its last alert within the window.
    let candidate = |n: &usize| {
        let i = &open[*n];
        i.takes_alerts() && alert.received_at - i.row.last_alert_at <= window
    };
    // The open incident holding this very alert, else the one it flapped out of: a flapping
    // alert's incident, resolved within the window, opens again rather than a new incident
    // each time it fires.
    let holding = newest(&mut holders.iter().copied().filter(candidate));
    let reopened = || {
        newest(&mut holders.iter().copied().filter(|n| {
            let i = &open[*n];
            i.is_resolved()
                && i.row
                    .resolved_at
                    .is_some_and(|at| alert.received_at - at <= window)
        }))
    };
    if let Some(n) = holding.or_else(reopened) {
        return Place::Join(n);
    }
    // Same alert, same group, same service.
    if let Some(n) = newest(&mut tx.related(alert).into_iter().filter(candidate)) {
        return Place::Join(n);
    }
    if state.args.shared.topology.is_none() && state.args.shared.embeddings.is_none() {
        return Place::Open;
    }
    let candidates: Vec<usize> = (0..open.len()).filter(candidate).collect();
    if candidates.is_empty() {
        return Place::Open;
    }
    // Connected services in the service graph.
    if let (Some(topology), Some(service)) = (&state.args.shared.topology, &alert.service) {
        let mut linked = Vec::new();
        for n in &candidates {
            for other in &open[*n].services {
                if topology.connected(alert.org_id, service, other).await {
                    linked.push(*n);
                    break;
                }
            }
        }
        if let Some(n) = newest(&mut linked.into_iter()) {
            return Place::Join(n);
        }
    }
    // Close text.
    match similar(state, open, &candidates, alert, texts).await {
        Some(n) => Place::Join(n),
        None => Place::Open,
    }
}

/// The candidate whose text is closest to the alert's, if over the threshold.
async fn similar(
    state: &mut CorrelatorState,
    open: &[OpenIncident],
    candidates: &[usize],
    alert: &incident_alerts::Model,
    prefetched: &mut HashMap<String, Vec<f32>>,
) -> Option<usize> {
    let pool = state.args.shared.embeddings.clone()?;
    // What the pass embedded already.
    for n in candidates {
        let id = open[*n].row.id;
        if let std::collections::hash_map::Entry::Vacant(slot) = state.vectors.entry(id) {
            if let Some(v) = prefetched.remove(&open[*n].text()) {
                slot.insert(v);
            }
        }
    }
    let text = alert_text(alert);
    let mut mine = prefetched.get(&text).cloned();
    let mut texts = Vec::new();
    if mine.is_none() {
        texts.push(text);
    }
    let missing: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|n| !state.vectors.contains_key(&open[*n].row.id))
        .collect();
    texts.extend(missing.iter().map(|n| open[*n].text()));
    if !texts.is_empty() {
        let vectors = match pool.embed(texts).await {
            Ok(v) => v,
            Err(e) => {
                // Without embeddings the alert is judged on its fields alone.
                tracing::warn!(error = %e, "cannot embed an alert for correlation");
                return None;
            }
        };
        let mut vectors = vectors.into_iter();
        if mine.is_none() {
            mine = vectors.next();
        }
        for (n, v) in missing.iter().zip(vectors) {
            state.vectors.insert(open[*n].row.id, v);
        }
    }
    let mine = mine?;
    let threshold = state.args.shared.config.similarity;
    candidates
        .iter()
        .filter_map(|n| {
            let v = state.vectors.get(&open[*n].row.id)?;
            Some((*n, cosine(&mine, v)))
        })
        .filter(|(_, c)| *c >= threshold)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, _)| n)
}

/// What an alert's text is for similarity: its title, service and the start of its
/// description.
pub fn alert_text(a: &incident_alerts::Model) -> String {
    let desc: String = a.description.chars().take(300).collect();
    match &a.service {
        Some(s) => format!("{} ({s}) {desc}", a.title),
        None => format!("{} {desc}", a.title),
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

//! One sync, page by page: each page of the listing (shared with identical queries) is
//! compared with the mirrored index and its new objects are created at once; updates of objects
//! already mirrored wait for the complete listing, and removals for the complete listing of
//! every query of the namespace. A listing that fails anywhere changes nothing already
//! mirrored. Only what the prune and the status need (the IDs seen, their content hashes) is
//! kept from page to page, so a sync's memory does not grow with the listing.

use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use kube::ResourceExt;

use crate::controller::context::{Context, Settled};
use crate::controller::error::ControllerError;
use crate::controller::inputs::credentials::{ResolveError, Resolved};
use crate::controller::inputs::source::{ListingKey, Sharing};
use crate::controller::inputs::validate::{ValidSpec, valid_template, validate};
use crate::controller::mirror::cache::Generation;
use crate::controller::mirror::mirrored::{
    DigestEntry, Listed, ListedDigest, ListingView, Mirrored, PageMemo, item_hash,
};
use crate::controller::planning::desired::{OwnerInfo, Owners};
use crate::controller::planning::plan::{
    Plan, PlanCounts, PlanInput, SoleOwner, WriteAction, WriteKind, let_go, plan, plan_listed,
    plan_unlisted,
};
use crate::controller::report::status::Outcome;
use crate::controller::report::status::{Skipped, WriteFailure};
use crate::crd::ImagePipelineQuery;
use crate::crd::pipeline::is_object_name;
use crate::ecs::{
    ImagePipelineItem, KnownLists, ListingError, PageEvent, PipelineFilter, PipelinePage,
};

/// The queries of `namespace` that may own objects, with their templates; `query` itself is
/// taken as given (the cache may not have it yet). A query whose spec is invalid elsewhere
/// still contributes its template (its objects keep its labels while it waits for a fix); only
/// a template that is itself invalid contributes nothing.
pub fn owners_in(ctx: &Context, namespace: &str, query: &ImagePipelineQuery) -> Owners {
    let mut owners = served_in(ctx, namespace);
    owners.extend(owner_info(query));
    owners
}

fn owner_info(q: &ImagePipelineQuery) -> Option<(String, OwnerInfo)> {
    let uid = q.uid()?;
    let template = valid_template(&q.spec).unwrap_or_default();
    Some((
        uid.clone(),
        OwnerInfo {
            name: q.name_any(),
            uid,
            template,
            prune: q.spec.prune,
        },
    ))
}

/// The queries of `namespace` this instance serves (those its label selector selects).
pub fn served_in(ctx: &Context, namespace: &str) -> Owners {
    ctx.queries
        .state()
        .iter()
        .filter(|q| q.namespace().as_deref() == Some(namespace))
        .filter_map(|q| owner_info(q))
        .collect()
}

/// Lets go of the queries that moved to another shard: on every object where another instance
/// has adopted a query this one no longer serves, this instance's reference (and the labels
/// from that query's template) goes; see [`let_go`]. Returns how many objects it released.
pub async fn let_go_of_moved(ctx: &Context) -> Result<usize, ControllerError> {
    // The usual case, one instance: nothing to look for, and a scan of every record (a few ms
    // at 100,000) every ten seconds would be most of the operator's CPU at rest.
    if !ctx.pipelines.any_with_others() {
        return Ok(0);
    }
    let candidates = ctx.pipelines.matching(|m| {
        !m.co_owned().is_empty() || (m.owners.is_empty() && !m.other_owners().is_empty())
    });
    let mut released = 0;
    for (namespace, objects) in candidates {
        let lock = ctx.locks.of(&namespace);
        let _guard = lock.lock().await;
        let plan = let_go(
            &namespace,
            &objects,
            &served_in(ctx, &namespace),
            ctx.object_label.as_deref(),
        );
        if plan.is_empty() {
            continue;
        }
        let failures = ctx
            .writer
            .apply_plan(&namespace, &plan, &ctx.recent, ctx.observer.as_ref())
            .await?;
        released += plan.writes.len() - failures.len();
        for f in &failures {
            tracing::warn!(%namespace, name = %f.name, "letting go of a moved query failed: {}", f.message);
        }
    }
    Ok(released)
}

/// For each object this query owns but no longer lists (`listed` tells which it lists), the
/// other queries of the namespace whose last complete listing (remembered by this process)
/// contains it.
fn claims_on_released(
    ctx: &Context,
    uid: &str,
    owners: &Owners,
    existing: &BTreeMap<String, Arc<Mirrored>>,
    listed: impl Fn(&str) -> bool,
) -> BTreeMap<String, Vec<String>> {
    let released: HashSet<&str> = existing
        .iter()
        .filter(|(name, obj)| !listed(name) && obj.is_owned_by(uid))
        .map(|(name, _)| name.as_str())
        .collect();
    let mut claims: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if released.is_empty() {
        return claims;
    }
    for other in owners.keys().filter(|other| other.as_str() != uid) {
        let Some(their) = ctx.remembered(other).and_then(|m| m.listing) else {
            continue;
        };
        for entry in &their.entries {
            if released.contains(&*entry.id) {
                claims
                    .entry(entry.id.to_string())
                    .or_default()
                    .push(other.clone());
            }
        }
    }
    claims
}

/// Whether another active query of `namespace` (valid, not suspended, not being deleted) has
/// no complete listing this process knows of: until it has one, nothing it might match may be
/// deleted.
fn awaiting_listings(ctx: &Context, namespace: &str, uid: &str) -> bool {
    ctx.queries.state().iter().any(|q| {
        q.namespace().as_deref() == Some(namespace)
            && q.uid().is_some_and(|other| {
                other != uid && ctx.remembered(&other).and_then(|m| m.listing).is_none()
            })
            && active_spec(q).is_some()
    })
}

/// Whether another active query (valid, not suspended, not being deleted) lists with the
/// same filter: only its syncs could join or reuse this query's listing (the credentials must
/// match too, which is left to the listing's key), so without one a listing keeps none of its
/// pages for others and holds a page or two at a time.
fn others_list_alike(ctx: &Context, uid: &str, filter: &PipelineFilter) -> bool {
    let filter = filter.normalized();
    ctx.queries.state().iter().any(|q| {
        q.uid().is_some_and(|other| other != uid)
            && active_spec(q).is_some_and(|v| v.filter.normalized() == filter)
    })
}

/// The valid spec of a query that syncs: not being deleted, not suspended.
fn active_spec(query: &ImagePipelineQuery) -> Option<ValidSpec> {
    if query.metadata.deletion_timestamp.is_some() || query.spec.suspend {
        return None;
    }
    validate(&query.spec).ok()
}

/// Whether the namespace no longer mirrors the query's remembered `digest` (sorted by ID):
/// someone else changed or deleted an object. Checked in place in the index first (every
/// listed object present and, as only its query writes it, up to date; nothing unlisted still
/// owned), and only when that finds something, by a full plan: the check runs after every
/// status change of the query, and must not cost a copy of the namespace.
pub fn drifted(
    ctx: &Context,
    query: &ImagePipelineQuery,
    valid: &ValidSpec,
    digest: &Arc<ListedDigest>,
    now: &str,
) -> Result<bool, ControllerError> {
    let sync = SyncOf::new(ctx, query, valid, now)?;
    let generation = ctx.pipelines.generation(&sync.namespace);
    if sync.is_settled(digest, generation) {
        return Ok(false);
    }
    if sync.in_sync_in_place(digest) {
        sync.settle(digest, generation);
        return Ok(false);
    }
    Ok(!plan_for(ctx, query, valid, digest, now)?.is_empty())
}

/// The plan that makes the namespace mirror `listing` (full, or a remembered digest, which
/// can tell whether anything needs writing but not build the objects) for `query`, from the
/// current view. A listing with items it could not read (no ID) removes nothing: one of them
/// may be a pipeline that is mirrored.
pub fn plan_for<'a, L: ListingView>(
    ctx: &Context,
    query: &ImagePipelineQuery,
    valid: &ValidSpec,
    listing: &'a L,
    now: &str,
) -> Result<Plan<'a>, ControllerError> {
    let sync = SyncOf::new(ctx, query, valid, now)?;
    let existing = ctx.recent.namespace_view(&ctx.pipelines, &sync.namespace);
    let owners = owners_in(ctx, &sync.namespace, query);
    let listed: HashSet<&str> = listing.items().iter().map(|i| i.id()).collect();
    let claims = claims_on_released(ctx, &sync.uid, &owners, &existing, |name| {
        listed.contains(name)
    });
    let awaiting_listings = awaiting_listings(ctx, &sync.namespace, &sync.uid);
    let plan = plan(&sync.input(
        listing.items(),
        &existing,
        &owners,
        &claims,
        awaiting_listings,
    ));
    Ok(if listing.skipped_items() > 0 {
        plan.without_removals()
    } else {
        plan
    })
}

/// How many items of updates a sync holds until its listing is complete; past it, the updates
/// are made by a second listing once the first is complete (a template change that touches
/// every object would otherwise hold the whole listing).
pub const HELD_UPDATES: usize = 1_000;

/// What a sync keeps of its listing as it reads it page by page.
#[derive(Default)]
struct Progress {
    /// Hashes of the IDs seen (each ID is mirrored once, first sight wins).
    seen: HashSet<u64, foldhash::fast::RandomState>,
    hasher: foldhash::quality::RandomState,
    /// ID and content hash of every pipeline seen, in listing order.
    entries: Vec<DigestEntry>,
    /// The pages the next listing may take as they were (see [`PageMemo`]).
    memos: Vec<PageMemo>,
    /// Pages of the previous listing taken as they were while its namespace is settled and
    /// nothing else was read: their entries are copied only if the listing turns out to
    /// differ (see [`Progress::materialize`]).
    deferred: Vec<PageMemo>,
    /// Items without a readable ID.
    skipped_items: usize,
    /// Pages read since the listing (re)started.
    pages: u32,
    /// Of those, the pages decoded (not taken as the previous listing had them).
    decoded_pages: u32,
    /// IDs that cannot be object names.
    unmirrorable: Vec<String>,
    /// Items of objects to update once the listing is complete.
    held: Vec<ImagePipelineItem>,
    /// Whether more updates were due than [`HELD_UPDATES`]: a second listing makes them.
    overflowed: bool,
    /// What the writes did.
    counts: PlanCounts,
    /// Refused writes.
    failures: Vec<WriteFailure>,
}

impl Progress {
    /// Forgets the pages read: the listing restarted from its first page. Writes made stay
    /// made.
    fn restart(&mut self) {
        let counts = self.counts;
        *self = Self {
            counts,
            ..Self::default()
        };
    }

    /// Whether `id` was seen before in this listing.
    fn has_seen(&self, id: &str) -> bool {
        self.seen.contains(&self.hasher.hash_one(id)) && self.entries.iter().any(|e| &*e.id == id)
    }

    /// Copies the entries of the deferred pages of `previous` (distinct pages of one listing:
    /// no ID twice), before anything else is recorded.
    fn materialize(&mut self, previous: &ListedDigest) {
        for memo in std::mem::take(&mut self.deferred) {
            self.take_page(&memo, previous);
        }
    }

    /// Records the entries of `memo`'s page of `previous` (none of their IDs seen before) and
    /// remembers the page.
    fn take_page(&mut self, memo: &PageMemo, previous: &ListedDigest) {
        let start = self.entries.len();
        for entry in memo.entries(previous) {
            self.record(entry.clone());
        }
        self.remember_page(memo.list_hash, memo.list_len as usize, start);
    }

    /// How many entries the deferred pages have.
    fn deferred_entries(&self) -> usize {
        self.deferred.iter().map(|m| m.len as usize).sum()
    }

    /// Records `entry` as seen (its ID not seen before).
    fn record(&mut self, entry: DigestEntry) {
        self.seen.insert(self.hasher.hash_one(&*entry.id));
        self.entries.push(entry);
    }

    /// Remembers the page whose list text has `list_hash` and `list_len` and whose entries are
    /// those recorded since `start`.
    fn remember_page(&mut self, list_hash: u64, list_len: usize, start: usize) {
        let as_u32 = |n: usize| u32::try_from(n).ok();
        let len = self.entries.len() - start;
        if let (Some(start), Some(len), Some(list_len)) =
            (as_u32(start), as_u32(len), as_u32(list_len))
        {
            self.memos.push(PageMemo {
                list_hash,
                list_len,
                start,
                len,
            });
        }
    }

    /// `item` with its content hash when it is the first with its ID in this listing
    /// (recording it if so).
    fn first_sight<'i>(
        &mut self,
        item: &'i ImagePipelineItem,
        region_id: &str,
    ) -> Option<Hashed<'i>> {
        let id = item.image_pipeline_id.as_str();
        let id_hash = self.hasher.hash_one(id);
        // A hash seen before is a duplicate only if the ID itself was (rare either way).
        if !self.seen.insert(id_hash) && self.entries.iter().any(|e| &*e.id == id) {
            tracing::debug!(%id, "duplicate pipeline ID in listing ignored");
            return None;
        }
        let hashed = Hashed::new(item, region_id);
        self.entries.push(DigestEntry {
            id: id.into(),
            hash: hashed.hash,
        });
        Some(hashed)
    }

    /// The complete listing's digest.
    fn into_digest(mut self) -> (ListedDigest, Self) {
        let entries = std::mem::take(&mut self.entries);
        let memos = std::mem::take(&mut self.memos);
        self.seen = HashSet::default();
        let digest = ListedDigest::new(entries, self.skipped_items, memos);
        (digest, self)
    }
}

/// The query's last complete listing, as a sync reads the next.
struct Previous {
    digest: Arc<ListedDigest>,
    /// The namespace's generation when the sync started, if the namespace was [`Settled`] on
    /// `digest` then.
    settled_at: Option<Generation>,
}

/// A listed item with its content hash, computed once for the digest and the plan.
struct Hashed<'i> {
    item: &'i ImagePipelineItem,
    hash: u64,
}

impl<'i> Hashed<'i> {
    fn new(item: &'i ImagePipelineItem, region_id: &str) -> Self {
        Self {
            item,
            hash: item_hash(item, region_id),
        }
    }
}

impl Listed for Hashed<'_> {
    fn id(&self) -> &str {
        &self.item.image_pipeline_id
    }
    fn content_hash(&self, _region_id: &str) -> u64 {
        self.hash
    }
    fn item(&self) -> Option<&ImagePipelineItem> {
        Some(self.item)
    }
}

/// Where the page loop is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The first listing: creates at once, updates held until it is complete.
    First,
    /// A second listing after a complete first one that had more updates than could be held:
    /// every write at once.
    Updates,
}

/// Everything one sync of one query works with.
struct SyncOf<'a> {
    ctx: &'a Context,
    query: &'a ImagePipelineQuery,
    valid: &'a ValidSpec,
    namespace: String,
    uid: String,
    name: String,
    now: &'a str,
}

impl<'a> SyncOf<'a> {
    /// The sync of `query`, which must have a namespace and a UID.
    fn new(
        ctx: &'a Context,
        query: &'a ImagePipelineQuery,
        valid: &'a ValidSpec,
        now: &'a str,
    ) -> Result<Self, ControllerError> {
        Ok(Self {
            ctx,
            query,
            valid,
            namespace: query
                .namespace()
                .ok_or(ControllerError::MissingObjectKey("namespace"))?,
            uid: query
                .uid()
                .ok_or(ControllerError::MissingObjectKey("uid"))?,
            name: query.name_any(),
            now,
        })
    }
}

impl SyncOf<'_> {
    /// What the plan of this query depends on, for `items` against `existing`.
    fn input<'s, 'i, I>(
        &'s self,
        items: &'i [I],
        existing: &'s BTreeMap<String, Arc<Mirrored>>,
        owners: &'s Owners,
        claims: &'s BTreeMap<String, Vec<String>>,
        awaiting_listings: bool,
    ) -> PlanInput<'s, 'i, I> {
        PlanInput {
            query_name: &self.name,
            query_uid: &self.uid,
            namespace: &self.namespace,
            region_id: &self.valid.filter.region_id,
            items,
            existing,
            owners,
            prune: self.valid.prune,
            claims,
            awaiting_listings,
            now: self.now,
            instance_label: self.ctx.object_label.as_deref(),
        }
    }

    /// The plan that makes the objects of `items` mirror them, from the current view of those
    /// objects (creates and updates only).
    fn plan_items<'i>(&self, items: &'i [Hashed<'i>]) -> Plan<'i> {
        let existing = self.ctx.recent.names_view(
            &self.ctx.pipelines,
            &self.namespace,
            items.iter().map(|i| i.id()),
        );
        let owners = owners_in(self.ctx, &self.namespace, self.query);
        let claims = BTreeMap::new();
        plan_listed(&self.input(items, &existing, &owners, &claims, false)).0
    }

    /// The names of the objects this query owns that the complete `digest` does not list,
    /// found in place in the index (the namespace is not copied).
    fn owned_unlisted(&self, digest: &ListedDigest) -> Vec<String> {
        self.ctx.pipelines.names_in(&self.namespace, |m| {
            m.is_owned_by(&self.uid) && !digest.lists(&m.name)
        })
    }

    /// The releases and deletions that make the namespace mirror the complete `digest`.
    fn plan_removals(&self, digest: &ListedDigest) -> Plan<'static> {
        let unlisted = self.owned_unlisted(digest);
        let existing = self.ctx.recent.names_view(
            &self.ctx.pipelines,
            &self.namespace,
            unlisted.iter().map(String::as_str),
        );
        let owners = owners_in(self.ctx, &self.namespace, self.query);
        let claims = claims_on_released(self.ctx, &self.uid, &owners, &existing, |name| {
            digest.lists(name)
        });
        let awaiting = awaiting_listings(self.ctx, &self.namespace, &self.uid);
        let input = self.input::<DigestEntry>(&[], &existing, &owners, &claims, awaiting);
        let mut out = Plan::default();
        plan_unlisted(&input, |name| digest.lists(name), &mut out);
        out.writes.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Whether the namespace was seen mirroring `digest` in place ([`Settled`]) and nothing
    /// of it or of the query's spec has changed since (`generation`: the namespace's now).
    fn is_settled(&self, digest: &Arc<ListedDigest>, generation: Generation) -> bool {
        self.ctx
            .remembered(&self.uid)
            .and_then(|m| m.settled)
            .is_some_and(|s| s.holds(digest, generation, self.query.metadata.generation))
    }

    /// Remembers that the namespace mirrored `digest` in place at `generation` (read before
    /// the look).
    fn settle(&self, digest: &Arc<ListedDigest>, generation: Generation) {
        let settled = Settled {
            listing: Arc::downgrade(digest),
            namespace: generation,
            query: self.query.metadata.generation,
        };
        self.ctx.remember(&self.uid, |m| m.settled = Some(settled));
    }

    /// Whether, looked at in place in the index, the namespace is as the query's remembered
    /// `digest` left it: every listed object present and (as only this query writes it) up to
    /// date, and nothing unlisted still owned. `false` means "plan fully to know".
    fn in_sync_in_place(&self, digest: &ListedDigest) -> bool {
        let mirrorable = digest.entries.iter().filter(|e| is_object_name(&e.id));
        let records = self
            .ctx
            .pipelines
            .get_all(&self.namespace, mirrorable.clone().map(|e| &*e.id));
        self.all_up_to_date(mirrorable, records) && self.owned_unlisted(digest).is_empty()
    }

    /// Whether the object of each of `entries` (`objects`, in the same order) is there, not
    /// being deleted, and up to date for this query alone: what the plan would leave as it is,
    /// checked without building anything (see [`SoleOwner`]).
    fn all_up_to_date<'e>(
        &self,
        entries: impl IntoIterator<Item = &'e DigestEntry>,
        objects: Vec<(&str, Option<Arc<Mirrored>>)>,
    ) -> bool {
        let owners = owners_in(self.ctx, &self.namespace, self.query);
        let (existing, claims) = (BTreeMap::new(), BTreeMap::new());
        let input = self.input::<DigestEntry>(&[], &existing, &owners, &claims, false);
        let sole = SoleOwner::of(&input);
        entries
            .into_iter()
            .zip(objects)
            .all(|(entry, (_, object))| {
                object.is_some_and(|o| !o.terminating && sole.is_up_to_date(&o, entry.hash))
            })
    }

    /// Plans with `make` and applies, under the namespace's lock; writes refused only for
    /// conflicts are planned again (`make` is told the round) once the watch has caught up.
    /// Returns what the writes did and which stayed refused.
    async fn apply<'i>(
        &self,
        mut make: impl FnMut(usize) -> Plan<'i>,
    ) -> Result<(PlanCounts, Vec<WriteFailure>), ControllerError> {
        let ctx = self.ctx;
        let mut counts = PlanCounts::default();
        let mut round = 0;
        loop {
            let lock = ctx.locks.of(&self.namespace);
            let guard = lock.lock().await;
            let plan = make(round);
            let failures = if plan.is_empty() {
                Vec::new()
            } else {
                ctx.writer
                    .apply_plan(&self.namespace, &plan, &ctx.recent, ctx.observer.as_ref())
                    .await?
            };
            drop(guard);
            add(&mut counts, succeeded(plan.counts, &failures));
            // A conflict means someone else wrote the object since it was read (the garbage
            // collector removing a deleted query's reference, another replica): plan those
            // objects again from what the watch shows once it has caught up, before calling
            // anything refused.
            if failures.is_empty()
                || round == CONFLICT_ROUNDS
                || !failures.iter().all(WriteFailure::is_conflict)
            {
                return Ok((counts, failures));
            }
            round += 1;
            tokio::time::sleep(CONFLICT_PAUSE).await;
        }
    }

    /// Takes a page the previous listing had (the same list text), without decoding it: its
    /// entries as they were, when none of their IDs was seen before in this listing and every
    /// object is up to date: known to be (the namespace is still as it was when `previous`
    /// was [`Settled`]), or seen to be in place. `false`: nothing was recorded; decode the page.
    fn reuse(&self, list_hash: u64, previous: &Previous, progress: &mut Progress) -> bool {
        let Some(memo) = previous.digest.page(list_hash) else {
            return false;
        };
        let entries = memo.entries(&previous.digest);
        let settled = previous
            .settled_at
            .is_some_and(|g| g == self.ctx.pipelines.generation(&self.namespace));
        if entries.len() != memo.len as usize {
            return false;
        }
        if settled && progress.entries.is_empty() && !progress.deferred.contains(memo) {
            progress.deferred.push(*memo);
            progress.counts.unchanged += memo.len;
            return true;
        }
        progress.materialize(&previous.digest);
        if entries.iter().any(|e| progress.has_seen(&e.id))
            || !(settled || self.up_to_date_in_place(entries))
        {
            return false;
        }
        progress.take_page(memo, &previous.digest);
        progress.counts.unchanged += memo.len;
        true
    }

    /// Whether the objects of `entries` exist, as the plan would see them, and are up to date
    /// for this query alone (what the plan would leave as they are, checked without building
    /// anything).
    fn up_to_date_in_place(&self, entries: &[DigestEntry]) -> bool {
        let objects = self.ctx.recent.effective_of(
            &self.ctx.pipelines,
            &self.namespace,
            entries.iter().map(|e| &*e.id),
        );
        self.all_up_to_date(entries, objects)
    }

    /// One page: its new objects are created; the updates are held (first pass) or made
    /// (second pass). A page whose every item became an entry of its own is remembered for the
    /// next listing.
    async fn page(
        &self,
        page: &PipelinePage,
        pass: Pass,
        progress: &mut Progress,
    ) -> Result<(), ControllerError> {
        let region_id = self.valid.filter.region_id.as_str();
        let items = &page.items;
        let start = progress.entries.len();
        let fresh: Vec<Hashed<'_>> = items
            .iter()
            .filter_map(|i| progress.first_sight(i, region_id))
            .collect();
        let whole = page.skipped_items == 0
            && fresh.len() == items.len()
            && items.iter().all(|i| is_object_name(&i.image_pipeline_id));
        if let (Some(list_hash), Some(list_len), true) = (page.list_hash, page.list_len, whole) {
            progress.remember_page(list_hash, list_len, start);
        }
        let (counts, failures) = self
            .apply(|round| {
                let plan = self.plan_items(&fresh);
                if round == 0 && pass == Pass::First {
                    progress.counts.unchanged += plan.counts.unchanged;
                    progress
                        .unmirrorable
                        .extend(plan.unmirrorable.iter().cloned());
                    let updates = plan.writes.iter().filter(|w| w.kind == WriteKind::Update);
                    for write in updates {
                        match write.item {
                            Some(item) if progress.held.len() < HELD_UPDATES => {
                                progress.held.push(item.clone());
                            }
                            _ => progress.overflowed = true,
                        }
                    }
                }
                match pass {
                    Pass::First => only(plan, |kind| kind == WriteKind::Create),
                    Pass::Updates => plan,
                }
            })
            .await?;
        add(&mut progress.counts, counts);
        progress.failures.extend(failures);
        Ok(())
    }

    /// The query's last complete listing, and whether the namespace is [`Settled`] on it
    /// (`generation`: the namespace's now).
    fn previous(&self, generation: Generation) -> Option<Previous> {
        let digest = self.ctx.remembered(&self.uid)?.listing?;
        let settled_at = self.is_settled(&digest, generation).then_some(generation);
        Some(Previous { digest, settled_at })
    }

    /// Reads a listing to its end, page by page, taking the pages `previous` had as they were
    /// where it can. `Ok(Err(..))` when the listing failed.
    async fn read_listing(
        &self,
        credentials: &Resolved,
        not_before: Option<jiff::Timestamp>,
        pass: Pass,
        previous: Option<&Previous>,
        progress: &mut Progress,
    ) -> Result<Result<(), ListingError>, ControllerError> {
        let key = ListingKey::new(credentials.identity.clone(), &self.valid.filter);
        let known = KnownLists::new(
            previous
                .iter()
                .flat_map(|p| p.digest.pages.iter())
                .map(|m| (m.list_hash, m.list_len as usize)),
        );
        let sharing = if others_list_alike(self.ctx, &self.uid, &self.valid.filter) {
            Sharing::Offered
        } else {
            Sharing::Alone
        };
        let mut feed = self.ctx.listings.list(
            key,
            credentials.provider.clone(),
            not_before,
            Some(known),
            sharing,
        );
        while let Some(item) = feed.next().await {
            let event = match item {
                Ok(event) => event,
                // The client has already scrubbed the credentials from the error's texts.
                Err(e) => return Ok(Err(e)),
            };
            match &*event {
                PageEvent::Restarted => progress.restart(),
                PageEvent::Page(page) => {
                    progress.pages += 1;
                    let same = page.list_hash.zip(previous);
                    let reused =
                        same.is_some_and(|(hash, previous)| self.reuse(hash, previous, progress));
                    self.ctx.observer.page_read(reused);
                    if reused {
                        continue;
                    }
                    if let Some(previous) = previous {
                        progress.materialize(&previous.digest);
                    }
                    // Another sync's listing may have left the page undecoded.
                    let page = match page.decoded() {
                        Ok(page) => page,
                        Err(error) => {
                            return Ok(Err(ListingError {
                                page: progress.pages,
                                calls: 0,
                                error,
                            }));
                        }
                    };
                    progress.skipped_items += page.skipped_items;
                    progress.decoded_pages += 1;
                    self.page(&page, pass, progress).await?;
                }
            }
        }
        Ok(Ok(()))
    }
}

/// `plan` with only the writes of the kinds `keep` accepts, and no deletions.
fn only<'i>(mut plan: Plan<'i>, keep: impl Fn(WriteKind) -> bool) -> Plan<'i> {
    plan.writes.retain(|w| keep(w.kind));
    plan.deletions.clear();
    plan.counts = PlanCounts {
        created: count(&plan, WriteKind::Create),
        updated: count(&plan, WriteKind::Update),
        released: count(&plan, WriteKind::Release),
        ..PlanCounts::default()
    };
    plan
}

fn count(plan: &Plan<'_>, kind: WriteKind) -> u32 {
    let n = plan.writes.iter().filter(|w| w.kind == kind).count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn add(total: &mut PlanCounts, more: PlanCounts) {
    total.created += more.created;
    total.updated += more.updated;
    total.released += more.released;
    total.deleted += more.deleted;
    total.deferred += more.deferred;
}

/// Lists (with a listing started at or after `not_before`, when given) and mirrors the
/// listing page by page; then, once it is complete, makes the held updates and the removals.
pub async fn attempt(
    ctx: &Context,
    query: &ImagePipelineQuery,
    valid: &ValidSpec,
    credentials: Result<&Resolved, &ResolveError>,
    not_before: Option<jiff::Timestamp>,
    now: &str,
) -> Result<Outcome, ControllerError> {
    let resolved = match credentials {
        Ok(r) => r,
        Err(e) => return Ok(Outcome::CredentialsError(e.to_string())),
    };
    let sync = SyncOf::new(ctx, query, valid, now)?;
    let started_at = ctx.pipelines.generation(&sync.namespace);
    let previous = sync.previous(started_at);
    let mut progress = Progress::default();
    if let Err(e) = sync
        .read_listing(
            resolved,
            not_before,
            Pass::First,
            previous.as_ref(),
            &mut progress,
        )
        .await?
    {
        if progress.counts.created > 0 {
            tracing::warn!(
                created = progress.counts.created,
                "the listing failed after new objects were created; nothing already mirrored \
                 was changed"
            );
        }
        return Ok(Outcome::ListingFailed(e));
    }
    let pages = progress.pages;
    // Every page of the settled previous listing taken as it was (deferred, nothing else
    // read), and nothing of the namespace changed meanwhile: the same listing, mirrored; it
    // stays the remembered one, and there is nothing to remove.
    let unchanged = previous.as_ref().is_some_and(|p| {
        p.settled_at == Some(started_at)
            && progress.entries.is_empty()
            && progress.decoded_pages == 0
            && progress.deferred_entries() == p.digest.entries.len()
            && p.digest.skipped_items == 0
            && progress.skipped_items == 0
    }) && ctx.pipelines.generation(&sync.namespace) == started_at;
    let (digest, mut progress) = match previous.as_ref() {
        Some(p) if unchanged => (p.digest.clone(), progress),
        Some(p) => {
            progress.materialize(&p.digest);
            let (digest, progress) = progress.into_digest();
            (Arc::new(digest), progress)
        }
        None => {
            let (digest, progress) = progress.into_digest();
            (Arc::new(digest), progress)
        }
    };
    // Remember the listing before writing, so a partly applied plan shows up as drift.
    ctx.remember(&sync.uid, |m| m.listing = Some(digest.clone()));

    let held = std::mem::take(&mut progress.held);
    let region_id = valid.filter.region_id.as_str();
    let held: Vec<Hashed<'_>> = held.iter().map(|i| Hashed::new(i, region_id)).collect();
    let (counts, failures) = sync.apply(|_| sync.plan_items(&held)).await?;
    add(&mut progress.counts, counts);
    progress.failures.extend(failures);
    drop(held);

    if progress.overflowed {
        let mut second = Progress::default();
        let started = jiff::Timestamp::now();
        let previous = Previous {
            digest: digest.clone(),
            settled_at: None,
        };
        if let Err(e) = sync
            .read_listing(
                resolved,
                Some(started),
                Pass::Updates,
                Some(&previous),
                &mut second,
            )
            .await?
        {
            return Ok(Outcome::ListingFailed(e));
        }
        add(&mut progress.counts, second.counts);
        progress.failures.extend(second.failures);
    }

    if digest.skipped_items == 0 && !unchanged {
        // A listing with items it could not read (no ID) removes nothing: one of them may be a
        // pipeline that is mirrored.
        let mut kept = 0;
        let (counts, failures) = sync
            .apply(|round| {
                let plan = sync.plan_removals(&digest);
                if round == 0 {
                    kept = plan.counts.unchanged;
                }
                plan
            })
            .await?;
        progress.counts.unchanged += kept;
        add(&mut progress.counts, counts);
        progress.failures.extend(failures);
    }

    // Every entry but those whose ID cannot be an object name (each recorded once).
    let matched = digest
        .entries
        .len()
        .saturating_sub(progress.unmirrorable.len());
    let matched = u32::try_from(matched).unwrap_or(u32::MAX);
    let skipped = Skipped {
        unreadable: u32::try_from(digest.skipped_items).unwrap_or(u32::MAX),
        unmirrorable: progress.unmirrorable,
    };
    if !skipped.is_empty() {
        tracing::warn!("not mirrored: {}", skipped.describe());
    }
    ctx.observer
        .items_skipped(&sync.namespace, &sync.name, skipped.count());
    let counts = progress.counts;
    Ok(if progress.failures.is_empty() {
        Outcome::Synced {
            pages,
            matched,
            counts,
            skipped,
        }
    } else {
        Outcome::WriteFailed {
            pages,
            matched,
            counts,
            failures: progress.failures,
        }
    })
}

/// How many times writes refused only for conflicts are planned again within one sync.
const CONFLICT_ROUNDS: usize = 3;

/// How long the watch is given to deliver the other writer's change before planning again.
const CONFLICT_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// What the plan's writes did, less the refused ones.
fn succeeded(mut counts: PlanCounts, failures: &[WriteFailure]) -> PlanCounts {
    for f in failures {
        let count = match f.action {
            WriteAction::Create => &mut counts.created,
            WriteAction::Update => &mut counts.updated,
            WriteAction::Release => &mut counts.released,
            WriteAction::Delete => &mut counts.deleted,
        };
        *count = count.saturating_sub(1);
    }
    counts
}

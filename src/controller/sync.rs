//! One sync: list (shared with identical queries), then plan and apply under the namespace's
//! lock. A listing that failed anywhere writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::ResourceExt;

use crate::controller::context::Context;
use crate::controller::error::ControllerError;
use crate::controller::inputs::credentials::{ResolveError, Resolved};
use crate::controller::inputs::source::ListingKey;
use crate::controller::inputs::validate::{ValidSpec, valid_template, validate};
use crate::controller::mirror::mirrored::{Listed, ListedDigest, ListingView, Mirrored};
use crate::controller::planning::desired::{OwnerInfo, Owners};
use crate::controller::planning::plan::{Plan, PlanCounts, PlanInput, WriteAction, let_go, plan};
use crate::controller::report::status::Outcome;
use crate::controller::report::status::{Skipped, WriteFailure};
use crate::crd::ImagePipelineQuery;
use crate::ecs::Listing;

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

/// For each object this query owns but no longer lists, the other queries of the namespace
/// whose last complete listing (remembered by this process) contains it.
fn claims_on_released<I: Listed>(
    ctx: &Context,
    uid: &str,
    owners: &Owners,
    existing: &BTreeMap<String, Arc<Mirrored>>,
    items: &[I],
) -> BTreeMap<String, Vec<String>> {
    let listed: BTreeSet<&str> = items.iter().map(|i| i.id()).collect();
    let released: BTreeSet<&str> = existing
        .iter()
        .filter(|(name, obj)| !listed.contains(name.as_str()) && obj.is_owned_by(uid))
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
            && q.metadata.deletion_timestamp.is_none()
            && !q.spec.suspend
            && validate(&q.spec).is_ok()
    })
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
    let namespace = query
        .namespace()
        .ok_or(ControllerError::MissingObjectKey("namespace"))?;
    let uid = query
        .uid()
        .ok_or(ControllerError::MissingObjectKey("uid"))?;
    let name = query.name_any();
    let existing = ctx.recent.namespace_view(&ctx.pipelines, &namespace);
    let owners = owners_in(ctx, &namespace, query);
    let claims = claims_on_released(ctx, &uid, &owners, &existing, listing.items());
    let awaiting_listings = awaiting_listings(ctx, &namespace, &uid);
    let plan = plan(&PlanInput {
        query_name: &name,
        query_uid: &uid,
        namespace: &namespace,
        region_id: &valid.filter.region_id,
        items: listing.items(),
        existing: &existing,
        owners: &owners,
        prune: valid.prune,
        claims: &claims,
        awaiting_listings,
        now,
        instance_label: ctx.object_label.as_deref(),
    });
    Ok(if listing.skipped_items() > 0 {
        plan.without_removals()
    } else {
        plan
    })
}

/// Lists (with a listing started at or after `not_before`, when given), plans and applies.
/// Returns the outcome and, after a complete listing, the listing.
pub async fn attempt(
    ctx: &Context,
    query: &ImagePipelineQuery,
    valid: &ValidSpec,
    credentials: Result<&Resolved, &ResolveError>,
    not_before: Option<jiff::Timestamp>,
    now: &str,
) -> Result<(Outcome, Option<Arc<Listing>>), ControllerError> {
    let resolved = match credentials {
        Ok(r) => r,
        Err(e) => return Ok((Outcome::CredentialsError(e.to_string()), None)),
    };
    let key = ListingKey::new(resolved.identity.clone(), &valid.filter);
    let listing = match ctx
        .listings
        .list(key, resolved.provider.clone(), not_before)
        .await
    {
        Ok(listing) => listing,
        // The client has already scrubbed the credentials from the error's texts.
        Err(e) => return Ok((Outcome::ListingFailed(e), None)),
    };
    let namespace = query
        .namespace()
        .ok_or(ControllerError::MissingObjectKey("namespace"))?;
    if let Some(uid) = query.uid() {
        // Remember the listing before writing, so a partly applied plan shows up as drift.
        let digest = Arc::new(ListedDigest::of(&listing, &valid.filter.region_id));
        ctx.remember(&uid, |m| m.listing = Some(digest));
    }
    let lock = ctx.locks.of(&namespace);
    let _guard = lock.lock().await;
    let plan = plan_for(ctx, query, valid, listing.as_ref(), now)?;
    let skipped = Skipped {
        unreadable: u32::try_from(listing.skipped_items).unwrap_or(u32::MAX),
        unmirrorable: plan.unmirrorable.clone(),
    };
    if !skipped.is_empty() {
        tracing::warn!("not mirrored: {}", skipped.describe());
    }
    ctx.observer
        .items_skipped(&namespace, &query.name_any(), skipped.count());
    let mut failures = ctx
        .writer
        .apply_plan(&namespace, &plan, &ctx.recent, ctx.observer.as_ref())
        .await?;
    let mut counts = succeeded(plan.counts, &failures);
    // A conflict means someone else wrote the object since it was read (the garbage collector
    // removing a deleted query's reference, another replica): plan those objects again from
    // what the watch shows once it has caught up, before calling anything refused.
    for _ in 0..CONFLICT_ROUNDS {
        if failures.is_empty() || !failures.iter().all(WriteFailure::is_conflict) {
            break;
        }
        tokio::time::sleep(CONFLICT_PAUSE).await;
        let again = plan_for(ctx, query, valid, listing.as_ref(), now)?;
        failures = ctx
            .writer
            .apply_plan(&namespace, &again, &ctx.recent, ctx.observer.as_ref())
            .await?;
        let done = succeeded(again.counts, &failures);
        counts.created += done.created;
        counts.updated += done.updated;
        counts.released += done.released;
        counts.deleted += done.deleted;
    }
    let outcome = if failures.is_empty() {
        Outcome::Synced {
            pages: listing.pages,
            matched: plan.matched,
            counts,
            skipped,
        }
    } else {
        Outcome::WriteFailed {
            pages: listing.pages,
            matched: plan.matched,
            counts,
            failures,
        }
    };
    Ok((outcome, Some(listing)))
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

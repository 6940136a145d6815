//! Step 5: the status a reconcile leaves behind. Pure: the old status and the outcome in, the
//! new status out; the caller patches only when it differs.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::controller::planning::plan::{PlanCounts, WriteAction};
use crate::crd::query::{ImagePipelineQueryStatus, SyncErrorStatus, SyncResultStatus};
use crate::ecs::{EcsError, ListingError};

/// The condition type the operator maintains.
pub const READY: &str = "Ready";

/// Reasons of the `Ready` condition.
pub mod reason {
    /// The last listing was complete and mirrored.
    pub const SYNCED: &str = "Synced";
    /// The spec breaks a rule; nothing is listed until it changes.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Credentials could not be resolved.
    pub const CREDENTIALS_ERROR: &str = "CredentialsError";
    /// The API answered with an error, or could not be reached.
    pub const API_ERROR: &str = "ApiError";
    /// The API throttled the listing.
    pub const THROTTLED: &str = "Throttled";
    /// `spec.suspend` is true.
    pub const SUSPENDED: &str = "Suspended";
    /// The listing was mirrored except for items that cannot be: without a readable ID
    /// (nothing is deleted while there are such), or with an ID that is not a valid object name.
    pub const PARTIALLY_SYNCED: &str = "PartiallySynced";
    /// The listing was complete, but the API server refused some of the writes.
    pub const WRITE_FAILED: &str = "WriteFailed";
}

/// Items of a complete listing that were not mirrored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Skipped {
    /// Items without a readable `ImagePipelineId`.
    pub unreadable: u32,
    /// IDs that are not valid object names.
    pub unmirrorable: Vec<String>,
}

impl Skipped {
    /// Whether every item was mirrored.
    pub fn is_empty(&self) -> bool {
        self.unreadable == 0 && self.unmirrorable.is_empty()
    }

    /// How many items were not mirrored.
    pub fn count(&self) -> u32 {
        self.unreadable
            .saturating_add(u32::try_from(self.unmirrorable.len()).unwrap_or(u32::MAX))
    }

    /// What a reader of the status needs to know, e.g. `1 item without a readable
    /// ImagePipelineId (nothing was deleted); 1 ID that is not a valid object name: ip-a..b`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.unreadable > 0 {
            parts.push(format!(
                "{} item{} without a readable ImagePipelineId (nothing was deleted or released)",
                self.unreadable,
                plural(self.unreadable)
            ));
        }
        if !self.unmirrorable.is_empty() {
            let n = u32::try_from(self.unmirrorable.len()).unwrap_or(u32::MAX);
            let mut ids = self
                .unmirrorable
                .iter()
                .take(MAX_NAMED)
                .map(|id| format!("{id:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            if self.unmirrorable.len() > MAX_NAMED {
                ids.push_str(&format!(
                    " and {} more",
                    self.unmirrorable.len() - MAX_NAMED
                ));
            }
            parts.push(format!(
                "{n} ID{} that {} not a valid object name: {ids}",
                plural(n),
                if n == 1 { "is" } else { "are" }
            ));
        }
        parts.join("; ")
    }
}

/// How many object names or IDs a status message names before it says "and N more".
const MAX_NAMED: usize = 5;

/// One write the API server refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    /// The ImagePipeline's name.
    pub name: String,
    /// What was attempted.
    pub action: WriteAction,
    /// The HTTP status (0 when the request got no answer).
    pub code: u16,
    /// The API's reason (`Forbidden`, `Invalid`, ...), or a short description of a transport error.
    pub reason: String,
    /// The API's message.
    pub message: String,
}

impl WriteFailure {
    /// Whether the object changed since it was read (409 Conflict): planning it again from a
    /// fresh view usually succeeds.
    pub fn is_conflict(&self) -> bool {
        self.code == 409
    }
}

impl std::fmt::Display for WriteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ImagePipeline {}: ", self.action, self.name)?;
        if self.code > 0 {
            write!(f, "{} {}: ", self.code, self.reason)?;
        }
        write!(f, "{}", self.message)
    }
}

/// What a reconcile came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A complete listing was mirrored.
    Synced {
        /// Pages fetched.
        pages: u32,
        /// Pipelines mirrored.
        matched: u32,
        /// What the writes did.
        counts: PlanCounts,
        /// Items that could not be mirrored.
        skipped: Skipped,
    },
    /// A complete listing, but some writes were refused; the others were made.
    WriteFailed {
        /// Pages fetched.
        pages: u32,
        /// Pipelines of the listing that are mirrored.
        matched: u32,
        /// What the writes that succeeded did.
        counts: PlanCounts,
        /// The refused writes.
        failures: Vec<WriteFailure>,
    },
    /// The spec is invalid (no sync happened).
    InvalidSpec(String),
    /// `suspend: true` (no sync happened).
    Suspended,
    /// A sync could not resolve credentials.
    CredentialsError(String),
    /// A sync's listing failed.
    ListingFailed(ListingError),
}

impl Outcome {
    /// The `Ready` reason of the outcome.
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Synced { skipped, .. } if !skipped.is_empty() => reason::PARTIALLY_SYNCED,
            Outcome::Synced { .. } => reason::SYNCED,
            Outcome::WriteFailed { .. } => reason::WRITE_FAILED,
            Outcome::InvalidSpec(_) => reason::INVALID_SPEC,
            Outcome::Suspended => reason::SUSPENDED,
            Outcome::CredentialsError(_) => reason::CREDENTIALS_ERROR,
            Outcome::ListingFailed(e) => match &e.error {
                EcsError::Credentials(_) => reason::CREDENTIALS_ERROR,
                EcsError::Filter(_) => reason::INVALID_SPEC,
                err if err.is_throttling() => reason::THROTTLED,
                _ => reason::API_ERROR,
            },
        }
    }

    /// Whether retrying soon is pointless (bad credentials or parameters).
    pub fn is_permanent_failure(&self) -> bool {
        match self {
            Outcome::CredentialsError(_) => true,
            Outcome::ListingFailed(e) => !e.error.is_transient(),
            _ => false,
        }
    }

    /// Whether the outcome is an attempted sync (which moves `lastSyncTime`).
    pub fn is_attempt(&self) -> bool {
        !matches!(self, Outcome::InvalidSpec(_) | Outcome::Suspended)
    }

    /// Whether the condition `Ready` is `True` after it.
    pub fn is_ready(&self) -> bool {
        matches!(self, Outcome::Synced { .. })
    }

    /// The error shown in `status.lastError`, if any.
    pub fn error(&self) -> Option<SyncErrorStatus> {
        match self {
            Outcome::Synced { .. } | Outcome::Suspended => None,
            Outcome::WriteFailed { .. } => Some(SyncErrorStatus {
                code: reason::WRITE_FAILED.into(),
                message: self.message(),
                ..SyncErrorStatus::default()
            }),
            Outcome::InvalidSpec(m) => Some(SyncErrorStatus {
                code: reason::INVALID_SPEC.into(),
                message: m.clone(),
                ..SyncErrorStatus::default()
            }),
            Outcome::CredentialsError(m) => Some(SyncErrorStatus {
                code: reason::CREDENTIALS_ERROR.into(),
                message: m.clone(),
                ..SyncErrorStatus::default()
            }),
            Outcome::ListingFailed(e) => Some(SyncErrorStatus {
                code: e.error.code(),
                message: e.error.to_string(),
                request_id: e.error.request_id().map(str::to_string),
                page: Some(e.page),
            }),
        }
    }

    /// The human message of the `Ready` condition.
    pub fn message(&self) -> String {
        match self {
            Outcome::Synced {
                pages,
                matched,
                counts,
                skipped,
            } => {
                let mut message = format!(
                    "Mirrored {matched} image pipeline{} from a complete listing of {pages} page{}",
                    plural(*matched),
                    plural(*pages)
                );
                if !skipped.is_empty() {
                    message.push_str(&format!("; not mirrored: {}", skipped.describe()));
                }
                if counts.deferred > 0 {
                    message.push_str(&format!(
                        "; {} deletion{} wait{} until the other queries of the namespace have listed",
                        counts.deferred,
                        plural(counts.deferred),
                        if counts.deferred == 1 { "s" } else { "" }
                    ));
                }
                message
            }
            Outcome::WriteFailed {
                matched, failures, ..
            } => {
                let n = u32::try_from(failures.len()).unwrap_or(u32::MAX);
                let mut named = failures
                    .iter()
                    .take(MAX_NAMED)
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                if failures.len() > MAX_NAMED {
                    named.push_str(&format!("; and {} more", failures.len() - MAX_NAMED));
                }
                format!(
                    "{n} write{} of {matched} mirrored image pipeline{} refused by the API server (the other writes were made): {named}",
                    plural(n),
                    plural(*matched)
                )
            }
            Outcome::InvalidSpec(m) => format!("Invalid spec: {m}"),
            Outcome::Suspended => {
                "Refreshing is suspended; mirrored ImagePipelines are kept as they are".into()
            }
            Outcome::CredentialsError(m) => m.clone(),
            Outcome::ListingFailed(e) => format!(
                "Listing failed; nothing already mirrored was changed: {e}{}",
                e.error
                    .request_id()
                    .map(|r| format!(" (RequestId {r})"))
                    .unwrap_or_default()
            ),
        }
    }
}

fn sync_result(pages: u32, counts: &PlanCounts, skipped: u32, failed: u32) -> SyncResultStatus {
    SyncResultStatus {
        pages,
        created: counts.created,
        updated: counts.updated,
        deleted: counts.deleted,
        released: counts.released,
        unchanged: counts.unchanged,
        deferred: counts.deferred,
        skipped,
        failed,
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// What the new status is computed from, besides the old status.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusInput<'a> {
    /// What happened.
    pub outcome: &'a Outcome,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Now.
    pub now: Timestamp,
    /// When to sync next (`None`: wait for a change).
    pub next_sync_time: Option<Timestamp>,
    /// `secret/<name>` or `ambient/<provider>`, when known.
    pub credentials: Option<String>,
    /// The requested-at annotation value this reconcile handled.
    pub requested_at: Option<&'a str>,
    /// The shard serving the query (`main` for the instance without `--shard`).
    pub shard: &'a str,
}

/// The `Ready` condition, keeping `lastTransitionTime` while the status stays the same.
pub fn ready_condition(
    old: &[Condition],
    outcome: &Outcome,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if outcome.is_ready() { "True" } else { "False" };
    let previous = old.iter().find(|c| c.type_ == READY);
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(now),
    };
    Condition {
        type_: READY.into(),
        status: status.into(),
        reason: outcome.reason().into(),
        message: outcome.message(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// The status after `input.outcome`.
pub fn next_status(
    old: Option<&ImagePipelineQueryStatus>,
    input: &StatusInput<'_>,
) -> ImagePipelineQueryStatus {
    let mut s = old.cloned().unwrap_or_default();
    let outcome = input.outcome;
    let mut conditions: Vec<Condition> = s
        .conditions
        .iter()
        .filter(|c| c.type_ != READY)
        .cloned()
        .collect();
    conditions.insert(
        0,
        ready_condition(&s.conditions, outcome, input.generation, input.now),
    );
    s.conditions = conditions;
    s.observed_generation = input.generation;
    s.shard = Some(input.shard.to_string());
    if let Some(r) = input.requested_at {
        s.last_handled_requested_at = Some(r.to_string());
    }
    s.next_sync_time = input.next_sync_time.map(Time);
    if input.credentials.is_some() {
        s.credentials = input.credentials.clone();
    }
    if outcome.is_attempt() {
        s.last_sync_time = Some(Time(input.now));
    }
    match outcome {
        Outcome::Synced {
            pages,
            matched,
            counts,
            skipped,
        } => {
            s.matched_count = Some(*matched);
            s.last_successful_sync_time = Some(Time(input.now));
            s.last_sync_result = Some(sync_result(*pages, counts, skipped.count(), 0));
            s.last_error = None;
        }
        Outcome::WriteFailed {
            pages,
            matched,
            counts,
            failures,
        } => {
            s.matched_count = Some(*matched);
            let failed = u32::try_from(failures.len()).unwrap_or(u32::MAX);
            s.last_sync_result = Some(sync_result(*pages, counts, 0, failed));
            s.last_error = outcome.error();
        }
        Outcome::Suspended => {}
        _ => s.last_error = outcome.error(),
    }
    s
}

//! The pure middle of a sync: what each mirrored object should be ([`desired`]: owner
//! references, merged templates, whether an object is up to date) and the writes that get the
//! namespace there ([`plan`]: creates, updates, releases, deletions, from a listing and the
//! mirrored index). No client, no clock.
//!
//! May use: [`super::mirror`]'s records and ownership, the CRD types, the ECS item model.

pub mod desired;
pub mod plan;

//! Helpers shared by the HA, metrics and fault tests.
#![allow(dead_code)]

pub mod lease_api;

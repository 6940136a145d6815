//! Helpers shared by the HA, metrics and fault tests.
#![allow(dead_code)]

pub mod context;
pub mod lease_api;
pub mod logs;
pub mod mock_api;
pub mod sim;

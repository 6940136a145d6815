//! Local simulator of the ECS endpoint (filled in by the simulator work).

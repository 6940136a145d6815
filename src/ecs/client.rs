//! The paging ECS client (filled in by the client work).

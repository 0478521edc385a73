//! Agent-facing server (being written).

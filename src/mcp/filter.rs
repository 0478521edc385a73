//! Filtering list results so a caller sees only what it may use (INTERFACE; being written).

//! Filtering list results so a caller sees only what it may use (INTERFACE; being written).
// TEMPORARY stubs (replaced by the wt-mcp branch).
use serde_json::Value;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind { Tools, Prompts, Resources, ResourceTemplates }
pub fn list_kind(_method: &str) -> Option<ListKind> { None }
pub fn filter_list(_kind: ListKind, _result: &mut Value, _keep: impl FnMut(&str) -> bool) -> usize { 0 }

//! Filtering list results so a caller sees only what it may use.
//!
//! The four list methods (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`) return an array of entries, each identified by one string key.
//! [`filter_list`] drops every entry the caller's policy rejects, and every entry without a
//! string key (fail closed), and leaves everything else — `nextCursor`, `_meta`, `ttlMs` — as
//! the upstream sent it. One exception: a filtered list differs per identity, so a `cacheScope`
//! other than `"private"` becomes `"private"`, or one agent's cached view would leak to another.

use serde_json::Value;

/// Which list a result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `tools/list`: `result.tools[].name`.
    Tools,
    /// `prompts/list`: `result.prompts[].name`.
    Prompts,
    /// `resources/list`: `result.resources[].uri`.
    Resources,
    /// `resources/templates/list`: `result.resourceTemplates[].uriTemplate`.
    ResourceTemplates,
}

impl ListKind {
    /// The member of `result` that holds the entries.
    pub fn field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The member of each entry that identifies it to policy.
    pub fn key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }
}

/// The list a method returns, or `None` for a method whose result is not filtered.
pub fn list_kind(method: &str) -> Option<ListKind> {
    match method {
        "tools/list" => Some(ListKind::Tools),
        "prompts/list" => Some(ListKind::Prompts),
        "resources/list" => Some(ListKind::Resources),
        "resources/templates/list" => Some(ListKind::ResourceTemplates),
        _ => None,
    }
}

/// Removes from `result` the entries whose key `keep` rejects, and entries without a string key;
/// returns how many were removed.
///
/// A result that is not an object, or has no member for the list, is left alone (returns 0). A
/// list member that is present but not an array cannot be filtered entry by entry, so it is
/// replaced by an empty array (fail closed; counted as 1 removal).
pub fn filter_list(
    kind: ListKind,
    result: &mut Value,
    mut keep: impl FnMut(&str) -> bool,
) -> usize {
    let Some(obj) = result.as_object_mut() else {
        return 0;
    };
    let key = kind.key();
    let removed = match obj.get_mut(kind.field()) {
        None => return 0,
        Some(Value::Array(entries)) => {
            let before = entries.len();
            entries.retain(|entry| {
                entry
                    .get(key)
                    .and_then(Value::as_str)
                    .is_some_and(&mut keep)
            });
            before - entries.len()
        }
        Some(other) => {
            *other = Value::Array(Vec::new());
            1
        }
    };
    if let Some(scope) = obj.get_mut("cacheScope")
        && scope.as_str() != Some("private")
    {
        *scope = Value::from("private");
    }
    removed
}

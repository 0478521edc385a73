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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_kinds() {
        let cases = [
            ("tools/list", Some(ListKind::Tools)),
            ("prompts/list", Some(ListKind::Prompts)),
            ("resources/list", Some(ListKind::Resources)),
            (
                "resources/templates/list",
                Some(ListKind::ResourceTemplates),
            ),
            ("tools/call", None),
            ("resources/read", None),
            ("Tools/list", None),
            ("tools/list ", None),
        ];
        for (method, want) in cases {
            assert_eq!(list_kind(method), want, "{method}");
        }
    }

    #[test]
    fn filters_each_kind_by_its_key() {
        let cases = [
            (
                ListKind::Tools,
                json!({"tools": [{"name": "a", "inputSchema": {}}, {"name": "b"}, {"name": "c"}]}),
                json!({"tools": [{"name": "a", "inputSchema": {}}, {"name": "c"}]}),
            ),
            (
                ListKind::Prompts,
                json!({"prompts": [{"name": "a"}, {"name": "b"}]}),
                json!({"prompts": [{"name": "a"}]}),
            ),
            (
                ListKind::Resources,
                json!({"resources": [{"uri": "a", "name": "b"}, {"uri": "b", "name": "a"}]}),
                json!({"resources": [{"uri": "a", "name": "b"}]}),
            ),
            (
                ListKind::ResourceTemplates,
                json!({"resourceTemplates": [{"uriTemplate": "b", "name": "a"}, {"uriTemplate": "c", "uri": "b"}]}),
                json!({"resourceTemplates": [{"uriTemplate": "c", "uri": "b"}]}),
            ),
        ];
        for (kind, mut result, want) in cases {
            let removed = filter_list(kind, &mut result, |k| k != "b");
            assert_eq!(result, want, "{kind:?}");
            assert_eq!(removed, 1, "{kind:?}");
        }
    }

    #[test]
    fn entries_without_a_string_key_are_removed() {
        let mut result = json!({"tools": [
            {"name": "ok"},
            {"title": "no name"},
            {"name": null},
            {"name": 7},
            {"name": ["ok"]},
            {"Name": "ok"},
            "ok",
            null,
            [{"name": "ok"}]
        ]});
        let mut seen = Vec::new();
        let removed = filter_list(ListKind::Tools, &mut result, |k| {
            seen.push(k.to_string());
            true
        });
        assert_eq!(removed, 8);
        assert_eq!(result, json!({"tools": [{"name": "ok"}]}));
        assert_eq!(seen, ["ok"]);
    }

    #[test]
    fn keeps_other_fields_and_privatizes_cache_scope() {
        let mut result = json!({
            "tools": [{"name": "a"}, {"name": "b"}],
            "nextCursor": "c2",
            "_meta": {"x": 1},
            "ttlMs": 60000,
            "cacheScope": "public"
        });
        assert_eq!(filter_list(ListKind::Tools, &mut result, |k| k == "a"), 1);
        assert_eq!(
            result,
            json!({
                "tools": [{"name": "a"}],
                "nextCursor": "c2",
                "_meta": {"x": 1},
                "ttlMs": 60000,
                "cacheScope": "private"
            })
        );
        // Even when nothing was removed, and for any value but "private".
        for scope in [
            json!("public"),
            json!("private"),
            json!("PUBLIC"),
            json!(null),
            json!(1),
        ] {
            let mut result = json!({"prompts": [], "cacheScope": scope});
            assert_eq!(filter_list(ListKind::Prompts, &mut result, |_| true), 0);
            assert_eq!(result, json!({"prompts": [], "cacheScope": "private"}));
        }
        // No cacheScope: none is added.
        let mut result = json!({"prompts": [{"name": "p"}]});
        assert_eq!(filter_list(ListKind::Prompts, &mut result, |_| true), 0);
        assert_eq!(result, json!({"prompts": [{"name": "p"}]}));
    }

    #[test]
    fn leaves_unfilterable_results_alone() {
        for mut result in [
            json!(null),
            json!([{"name": "a"}]),
            json!("tools"),
            json!({}),
            json!({"prompts": [{"name": "a"}], "cacheScope": "public"}),
        ] {
            let before = result.clone();
            assert_eq!(filter_list(ListKind::Tools, &mut result, |_| false), 0);
            assert_eq!(result, before);
        }
    }

    #[test]
    fn a_list_that_is_not_an_array_fails_closed() {
        for tools in [json!({"name": "a"}), json!("a"), json!(null)] {
            let mut result = json!({"tools": tools, "nextCursor": "n", "cacheScope": "public"});
            assert_eq!(filter_list(ListKind::Tools, &mut result, |_| true), 1);
            assert_eq!(
                result,
                json!({"tools": [], "nextCursor": "n", "cacheScope": "private"})
            );
        }
    }
}

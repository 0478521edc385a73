//! Filtering list results so a caller sees only what it may use.
//!
//! The four list methods (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`) return an array of entries, each identified by one string key.
//! [`join_and_filter`] joins the pages of a list, drops every entry the caller's policy
//! rejects, and every entry without a string key (fail closed), and leaves everything else —
//! `_meta`, `ttlMs`, the entries themselves — as the upstream wrote it, as text. One
//! exception: a filtered list differs per identity, so a `cacheScope` other than `"private"`
//! becomes `"private"`, or one agent's cached view would leak to another.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

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

/// The top-level members of one list page, their values left as the upstream wrote them.
///
/// Only the entries' keys are ever read: a tool list is mostly input schemas, and building
/// them into a tree only to write them out again was most of the work of a `tools/list`.
pub struct Page<'a> {
    members: BTreeMap<Cow<'a, str>, &'a RawValue>,
}

impl<'a> Page<'a> {
    /// Reads a page: `Ok(None)` when it is not a JSON object (it is then relayed untouched),
    /// `Err` when it is an object whose member names cannot be read (a lone surrogate escape,
    /// say): such a page is refused, never relayed unfiltered.
    pub fn read(raw: &'a RawValue) -> Result<Option<Page<'a>>, String> {
        if !raw.get().trim_ascii_start().starts_with('{') {
            return Ok(None);
        }
        let members = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
        Ok(Some(Page { members }))
    }

    /// The page's `nextCursor`, when it is a string.
    pub fn next_cursor(&self) -> Option<String> {
        let raw = self.members.get("nextCursor")?;
        serde_json::from_str::<String>(raw.get()).ok()
    }
}

/// The identifying members an entry may have; which one counts depends on the list.
#[derive(Deserialize)]
struct EntryKeys<'a> {
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    uri: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "uriTemplate")]
    uri_template: Option<&'a RawValue>,
}

/// The string key of one entry, or `None` (not an object, key missing or not a string, or
/// a member repeated).
fn entry_key(kind: ListKind, entry: &RawValue) -> Option<Cow<'_, str>> {
    // A struct also deserializes from an array, by position: only objects are entries.
    if !entry.get().trim_ascii_start().starts_with('{') {
        return None;
    }
    let keys: EntryKeys<'_> = serde_json::from_str(entry.get()).ok()?;
    let key = match kind {
        ListKind::Tools | ListKind::Prompts => keys.name,
        ListKind::Resources => keys.uri,
        ListKind::ResourceTemplates => keys.uri_template,
    }?;
    // Borrowed when the key has no escapes, decoded otherwise.
    match serde_json::from_str::<&str>(key.get()) {
        Ok(plain) => Some(Cow::Borrowed(plain)),
        Err(_) => serde_json::from_str::<String>(key.get())
            .ok()
            .map(Cow::Owned),
    }
}

/// Joins `pages` into one list result and filters it, written as JSON text; returns it with
/// the number of entries removed.
///
/// The result has the first page's members, with the entries of every page (later pages add
/// only their entries). Entries `keep` rejects go, and so do entries without a string key
/// (fail closed); a list member that is not an array becomes an empty one (counted as one
/// removal). `nextCursor` is dropped when `drop_cursor` (the agent gets the whole list).
/// Everything else stays as the upstream wrote it, but for a `cacheScope`, which becomes
/// `"private"` when there is a list: a filtered list differs per identity.
///
/// A first page without the list member is passed on as it is (minus the cursor). `None`
/// when there are no pages.
pub fn join_and_filter(
    kind: ListKind,
    pages: &[Page<'_>],
    drop_cursor: bool,
    mut keep: impl FnMut(&str) -> bool,
) -> Option<(String, usize)> {
    let first = pages.first()?;
    let field = kind.field();
    let has_list = first.members.contains_key(field);
    let mut removed = 0;
    let mut out = String::with_capacity(pages.iter().map(Page::text_len).sum::<usize>() + 16);
    out.push('{');
    for (name, value) in &first.members {
        if drop_cursor && name == "nextCursor" {
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        write_key(&mut out, name);
        if name == field {
            out.push('[');
            let mut kept = 0;
            for page in pages {
                let Some(list) = page.members.get(field) else {
                    continue;
                };
                let Ok(entries) = serde_json::from_str::<Vec<&RawValue>>(list.get()) else {
                    // Fail closed: what cannot be read entry by entry is not passed on.
                    removed += 1;
                    continue;
                };
                for entry in entries {
                    if entry_key(kind, entry).is_some_and(|key| keep(&key)) {
                        if kept > 0 {
                            out.push(',');
                        }
                        out.push_str(entry.get());
                        kept += 1;
                    } else {
                        removed += 1;
                    }
                }
            }
            out.push(']');
        } else if has_list && name == "cacheScope" {
            out.push_str("\"private\"");
        } else {
            out.push_str(value.get());
        }
    }
    out.push('}');
    Some((out, removed))
}

impl Page<'_> {
    /// About how much text the page holds (to size the joined result).
    fn text_len(&self) -> usize {
        self.members
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum()
    }
}

/// Writes `"name":` with `name` escaped as a JSON string.
fn write_key(out: &mut String, name: &str) {
    // Serializing a string cannot fail.
    if let Ok(quoted) = serde_json::to_string(name) {
        out.push_str(&quoted);
    }
    out.push(':');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// `result` as the upstream's one page, filtered in place (the cursor kept); the number
    /// of entries removed. A result that is not an object is left as it is.
    fn filter_list(kind: ListKind, result: &mut Value, keep: impl FnMut(&str) -> bool) -> usize {
        let raw = RawValue::from_string(result.to_string()).unwrap();
        let Some(page) = Page::read(&raw).expect("a readable page") else {
            return 0;
        };
        let (text, removed) = join_and_filter(kind, &[page], false, keep).unwrap();
        *result = serde_json::from_str(&text).expect("the filtered list is JSON");
        removed
    }

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
            [{"name": "ok"}],
            ["ok"]
        ]});
        let mut seen = Vec::new();
        let removed = filter_list(ListKind::Tools, &mut result, |k| {
            seen.push(k.to_string());
            true
        });
        assert_eq!(removed, 9);
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

    #[test]
    fn pages_join_into_one_list_without_a_cursor() {
        let texts = [
            r#"{"tools":[{"name":"a"},{"name":"b","inputSchema":{"type":"object"}}],"nextCursor":"p2","_meta":{"m":1}}"#,
            r#"{"tools":[{"name":"c"},{"name":"d"}],"nextCursor":"p3","_meta":{"m":2}}"#,
            r#"{"tools":[{"name":"e"}]}"#,
        ];
        let raws: Vec<Box<RawValue>> = texts
            .iter()
            .map(|t| RawValue::from_string(t.to_string()).unwrap())
            .collect();
        let pages: Vec<Page<'_>> = raws
            .iter()
            .map(|r| Page::read(r).unwrap().unwrap())
            .collect();
        assert_eq!(pages[0].next_cursor().as_deref(), Some("p2"));
        assert_eq!(pages[2].next_cursor(), None);
        let (text, removed) = join_and_filter(ListKind::Tools, &pages, true, |k| k != "c").unwrap();
        assert_eq!(removed, 1);
        let joined: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            joined,
            json!({
                "tools": [{"name": "a"}, {"name": "b", "inputSchema": {"type": "object"}}, {"name": "d"}, {"name": "e"}],
                "_meta": {"m": 1}
            })
        );
        // Entries are passed on byte for byte.
        assert!(
            text.contains(r#"{"name":"b","inputSchema":{"type":"object"}}"#),
            "{text}"
        );
        assert!(join_and_filter(ListKind::Tools, &[], true, |_| true).is_none());
    }

    #[test]
    fn keys_are_read_after_escapes_and_repeated_keys_fail_closed() {
        let mut result = json!({"tools": []});
        let raw = RawValue::from_string(
            r#"{"tools":[{"name":"a"},{"name":"b"},{"name":"a","name":"b"},{"name":"ok","name":"ok"}]}"#
                .to_string(),
        )
        .unwrap();
        let page = Page::read(&raw).unwrap().unwrap();
        let mut seen = Vec::new();
        let (text, removed) = join_and_filter(ListKind::Tools, &[page], true, |k| {
            seen.push(k.to_string());
            true
        })
        .unwrap();
        result = serde_json::from_str(&text).unwrap_or(result);
        assert_eq!(seen, ["a", "b"]);
        assert_eq!(removed, 2);
        assert_eq!(result["tools"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn a_page_with_unreadable_member_names_is_refused() {
        // serde_json accepts a lone surrogate escape as raw text but cannot decode it.
        for text in [
            r#"{"tools":[{"name":"ssh_execute"}],"\ud800":0}"#,
            r#"{"\udc00":1,"tools":[]}"#,
        ] {
            let raw = RawValue::from_string(text.to_string()).expect("valid as raw text");
            assert!(Page::read(&raw).is_err(), "{text}");
        }
        let raw = RawValue::from_string("[1]".to_string()).unwrap();
        assert!(Page::read(&raw).unwrap().is_none(), "not an object");
    }
}

//! What a message asks for, reduced to what the policy decides on (INTERFACE; being written).

use serde_json::{Map, Value};

/// The thing a request acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject<'a> {
    /// `tools/call`.
    Tool { name: &'a str, arguments: Option<&'a Map<String, Value>> },
    /// `prompts/get`.
    Prompt { name: &'a str, arguments: Option<&'a Map<String, Value>> },
    /// `resources/read`, `resources/subscribe`, `resources/unsubscribe`.
    Resource { uri: &'a str },
    /// `completion/complete` (the `ref`'s name or uri).
    Completion { reference: &'a str },
    /// Any other method (initialize, ping, the list methods, notifications).
    Method { method: &'a str },
}

// TEMPORARY stubs (replaced by the wt-mcp branch).
pub struct SubjectError { pub code: i64, pub message: String }
pub fn subject_of<'a>(method: &'a str, _params: Option<&'a Value>) -> Result<Subject<'a>, SubjectError> { Ok(Subject::Method { method }) }
pub fn is_forwardable_notification(_m: &str) -> bool { false }

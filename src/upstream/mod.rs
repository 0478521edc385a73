//! The MCP server the gateway fronts (TEMPORARY stub; replaced by the wt-upstream branch).
use crate::config::UpstreamConfig;
use serde_json::Value;
use std::time::Duration;
#[derive(Clone)]
pub struct Upstream {}
pub enum Outcome {
    Result(Value),
    Error(Value),
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    Unavailable(String),
    Timeout,
    Died,
    Protocol(String),
}
impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
pub enum UpstreamEvent {
    Started { pid: Option<u32> },
    Exited { status: String, pending: usize },
    Restarting { after: Duration },
    NonJsonLine(String),
    Stderr(String),
    Dropped(String),
}
impl Upstream {
    pub async fn start(
        _cfg: &UpstreamConfig,
        _events: tokio::sync::mpsc::UnboundedSender<UpstreamEvent>,
    ) -> Result<Upstream, UpstreamError> {
        Ok(Upstream {})
    }
    pub fn initialize_result(&self) -> Option<Value> {
        None
    }
    pub async fn call(
        &self,
        _method: &str,
        _params: Option<Value>,
    ) -> Result<Outcome, UpstreamError> {
        Err(UpstreamError::Timeout)
    }
    pub async fn notify(&self, _method: &str, _params: Option<Value>) {}
    pub async fn shutdown(&self) {}
    pub fn child_pid(&self) -> Option<u32> {
        None
    }
}

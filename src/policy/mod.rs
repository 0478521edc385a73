//! Policy (being written).
use std::ops::Range;
use std::path::Path;
use serde::Deserialize;
use crate::config::{ConfigError, SourceMap};
pub struct PolicySource<'a> { pub map: &'a SourceMap<'a>, pub base: &'a Path, pub span: Range<usize> }
#[derive(Debug, Deserialize)]
pub struct PolicySection {}
#[derive(Debug)]
pub struct Policy {}
impl Policy {
    pub fn compile(_s: PolicySection, _src: &PolicySource) -> Result<Policy, ConfigError> { Ok(Policy {}) }
    pub fn check_identity_name(&self, _n: &str) -> Result<(), String> { Ok(()) }
}

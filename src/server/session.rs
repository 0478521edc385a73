//! Agent sessions: the `Mcp-Session-Id` an agent got from `initialize`, bound to its identity.
//!
//! A session belongs to the identity that opened it. A request that names another identity's
//! session is answered exactly like one naming a session that does not exist (404), so
//! session ids cannot be probed. Sessions expire after an idle time and their number is capped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::identity::random_bytes;

/// What the gateway remembers of one agent session.
#[derive(Debug)]
pub struct Session {
    /// The identity that opened the session.
    pub identity: Arc<str>,
    /// Protocol version agreed in `initialize`.
    pub protocol_version: String,
    /// In-flight requests by the agent's JSON-RPC id (compact JSON), so
    /// `notifications/cancelled` can stop them.
    in_flight: Mutex<HashMap<String, watch::Sender<bool>>>,
    last_used: Mutex<Instant>,
}

impl Session {
    /// Registers an in-flight request; the receiver turns `true` if the agent cancels it.
    pub fn begin(&self, request_id: &str) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        if let Ok(mut map) = self.in_flight.lock() {
            map.insert(request_id.to_string(), tx);
        }
        rx
    }

    pub fn end(&self, request_id: &str) {
        if let Ok(mut map) = self.in_flight.lock() {
            map.remove(request_id);
        }
    }

    /// Cancels an in-flight request; false if there is none with that id.
    pub fn cancel(&self, request_id: &str) -> bool {
        let sender = self
            .in_flight
            .lock()
            .ok()
            .and_then(|mut m| m.remove(request_id));
        sender.is_some_and(|tx| tx.send(true).is_ok())
    }

    fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }

    fn idle_for(&self, now: Instant) -> Duration {
        self.last_used
            .lock()
            .map(|t| now.saturating_duration_since(*t))
            .unwrap_or_default()
    }
}

/// Why a session lookup failed.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionError {
    /// No such session for this identity (or it expired): HTTP 404, the agent re-initializes.
    NotFound,
    /// The session table is full: HTTP 503.
    Full,
}

/// All live sessions.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
    max: usize,
    idle_timeout: Duration,
}

impl Sessions {
    pub fn new(max: usize, idle_timeout: Duration) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            max,
            idle_timeout,
        }
    }

    /// Opens a session for `identity` and returns its id (128 random bits, hex).
    pub fn open(
        &self,
        identity: Arc<str>,
        protocol_version: String,
    ) -> Result<String, SessionError> {
        let mut raw = [0u8; 16];
        random_bytes(&mut raw).map_err(|_| SessionError::Full)?;
        let id = hex::encode(raw);
        let session = Arc::new(Session {
            identity,
            protocol_version,
            in_flight: Mutex::new(HashMap::new()),
            last_used: Mutex::new(Instant::now()),
        });
        let mut map = self.map.lock().map_err(|_| SessionError::Full)?;
        if map.len() >= self.max {
            // Make room from expired sessions before refusing.
            let now = Instant::now();
            map.retain(|_, s| s.idle_for(now) < self.idle_timeout);
            if map.len() >= self.max {
                return Err(SessionError::Full);
            }
        }
        map.insert(id.clone(), session);
        Ok(id)
    }

    /// The session `id` if it exists, has not expired and belongs to `identity`.
    pub fn get(&self, id: &str, identity: &str) -> Result<Arc<Session>, SessionError> {
        let map = self.map.lock().map_err(|_| SessionError::NotFound)?;
        let session = map.get(id).ok_or(SessionError::NotFound)?;
        if &*session.identity != identity || session.idle_for(Instant::now()) >= self.idle_timeout {
            return Err(SessionError::NotFound);
        }
        session.touch();
        Ok(session.clone())
    }

    /// Ends a session (DELETE). Only its own identity may end it.
    pub fn close(&self, id: &str, identity: &str) -> Result<(), SessionError> {
        let mut map = self.map.lock().map_err(|_| SessionError::NotFound)?;
        match map.get(id) {
            Some(s) if &*s.identity == identity => {
                if let Some(s) = map.remove(id) {
                    // Stop whatever the session still has running.
                    if let Ok(mut inflight) = s.in_flight.lock() {
                        for (_, tx) in inflight.drain() {
                            let _ = tx.send(true);
                        }
                    }
                }
                Ok(())
            }
            _ => Err(SessionError::NotFound),
        }
    }

    /// Drops expired sessions; returns how many are left.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        match self.map.lock() {
            Ok(mut map) => {
                map.retain(|_, s| s.idle_for(now) < self.idle_timeout);
                map.len()
            }
            Err(_) => 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_belong_to_their_identity() {
        let s = Sessions::new(2, Duration::from_secs(60));
        let id = s.open("a".into(), "2025-06-18".into()).unwrap();
        assert_eq!(id.len(), 32);
        assert!(s.get(&id, "a").is_ok());
        assert_eq!(s.get(&id, "b").unwrap_err(), SessionError::NotFound);
        assert_eq!(s.close(&id, "b").unwrap_err(), SessionError::NotFound);
        assert!(s.close(&id, "a").is_ok());
        assert_eq!(s.get(&id, "a").unwrap_err(), SessionError::NotFound);
    }

    #[test]
    fn the_table_is_capped() {
        let s = Sessions::new(2, Duration::from_secs(60));
        s.open("a".into(), "v".into()).unwrap();
        s.open("a".into(), "v".into()).unwrap();
        assert_eq!(
            s.open("a".into(), "v".into()).unwrap_err(),
            SessionError::Full
        );
    }

    #[test]
    fn cancel_reaches_the_request() {
        let s = Sessions::new(2, Duration::from_secs(60));
        let id = s.open("a".into(), "v".into()).unwrap();
        let session = s.get(&id, "a").unwrap();
        let rx = session.begin("7");
        assert!(session.cancel("7"));
        assert!(*rx.borrow());
        assert!(!session.cancel("7"));
    }
}

//! Sessions and the simulator's clock: who is mid-conversation, which return of control each
//! session waits on, which invocationIds were used up or expired, and when sessions go idle.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::engine::Pending;

/// Real time plus an offset that tests can advance; its wall clock can be stopped at an
/// instant (tests that compare whole streams).
#[derive(Debug)]
pub(crate) struct Clock {
    base: Instant,
    offset: Mutex<Duration>,
    frozen_wall: Mutex<Option<DateTime<Utc>>>,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
            frozen_wall: Mutex::new(None),
        }
    }

    /// From now on `wall()` is `at` (plus any later `advance`), not the system's time.
    pub fn freeze_wall(&self, at: DateTime<Utc>) {
        *self
            .frozen_wall
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(at);
    }

    fn offset(&self) -> Duration {
        *self
            .offset
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn advance(&self, by: Duration) {
        let mut o = self
            .offset
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *o += by;
    }

    /// Monotonic time since the simulator started.
    pub fn now(&self) -> Duration {
        self.base.elapsed() + self.offset()
    }

    pub fn wall(&self) -> DateTime<Utc> {
        let frozen = *self
            .frozen_wall
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        frozen.unwrap_or_else(Utc::now)
            + chrono::Duration::from_std(self.offset()).unwrap_or_default()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Session {
    pub last_seen: Duration,
    pub turns: u32,
    pub pending: Option<Pending>,
    pub attributes: Map<String, Value>,
    pub memory_id: Option<String>,
}

/// Why an invocationId can no longer be resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spent {
    Resumed,
    Superseded,
    Expired { ttl_secs: u64 },
}

#[derive(Debug, Default)]
pub(crate) struct Sessions {
    pub map: HashMap<String, Session>,
    pub spent: HashMap<String, Spent>,
    pub created: u64,
}

impl Sessions {
    /// The live session for `key`, creating it (or replacing an expired one) as Bedrock would.
    pub fn open(&mut self, key: &str, now: Duration, ttl: Duration) -> &mut Session {
        let expired = self
            .map
            .get(key)
            .is_some_and(|s| now.saturating_sub(s.last_seen) > ttl);
        if expired {
            if let Some(old) = self.map.remove(key) {
                if let Some(p) = old.pending {
                    self.spent.insert(
                        p.invocation_id,
                        Spent::Expired {
                            ttl_secs: ttl.as_secs(),
                        },
                    );
                }
            }
        }
        if !self.map.contains_key(key) {
            self.created += 1;
            if self.map.len() >= 4096 && self.created % 1024 == 0 {
                self.sweep(now, ttl.max(Duration::from_secs(5400)));
            }
        }
        self.map.entry(key.to_owned()).or_insert_with(|| Session {
            last_seen: now,
            ..Session::default()
        })
    }

    fn sweep(&mut self, now: Duration, max_ttl: Duration) {
        self.map
            .retain(|_, s| now.saturating_sub(s.last_seen) <= max_ttl);
    }
}

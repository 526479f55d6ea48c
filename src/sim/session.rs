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

/// How long the simulator remembers a session, a spent invocationId or a resume count after
/// its last use: past the longest idle TTL Bedrock allows (3,600 s), with room to spare.
const REMEMBER: Duration = Duration::from_secs(5400);
/// A map is swept for what it may forget once it holds this many entries, and then at every
/// `SWEEP_EVERY`-th entry added.
const SWEEP_FROM: usize = 4096;
const SWEEP_EVERY: u64 = 1024;

/// Values by id, each with when it was last touched; what went untouched for `REMEMBER` is
/// forgotten as the map grows, so a simulator left running for days under load (a team's soak
/// test) does not keep every invocationId it ever saw.
#[derive(Debug)]
pub(crate) struct Aged<V> {
    map: HashMap<String, (V, Duration)>,
    added: u64,
}

impl<V> Default for Aged<V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            added: 0,
        }
    }
}

impl<V> Aged<V> {
    pub fn get(&self, id: &str) -> Option<&V> {
        self.map.get(id).map(|(v, _)| v)
    }

    /// The value for `id`, `new()` if it has none (or it was forgotten), touched at `now`.
    pub fn touch(&mut self, id: &str, now: Duration, new: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(id) {
            self.forget_old(now);
        }
        let (v, at) = self
            .map
            .entry(id.to_owned())
            .or_insert_with(|| (new(), now));
        *at = now;
        v
    }

    pub fn insert(&mut self, id: String, v: V, now: Duration) {
        if !self.map.contains_key(&id) {
            self.forget_old(now);
        }
        self.map.insert(id, (v, now));
    }

    /// Counts an entry about to be added; now and then, once the map is large, forgets what
    /// went untouched for `REMEMBER`.
    fn forget_old(&mut self, now: Duration) {
        self.added += 1;
        if self.map.len() >= SWEEP_FROM && self.added % SWEEP_EVERY == 0 {
            self.map
                .retain(|_, (_, at)| now.saturating_sub(*at) <= REMEMBER);
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Sessions {
    pub map: HashMap<String, Session>,
    /// Why each invocationId that can no longer be resumed cannot, for the error a late
    /// resume gets.
    pub spent: Aged<Spent>,
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
                    let why = Spent::Expired {
                        ttl_secs: ttl.as_secs(),
                    };
                    self.spent.insert(p.invocation_id, why, now);
                }
            }
        }
        if !self.map.contains_key(key) {
            self.created += 1;
            if self.map.len() >= SWEEP_FROM && self.created % SWEEP_EVERY == 0 {
                self.sweep(now, ttl.max(REMEMBER));
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn an_aged_map_forgets_only_what_went_untouched_past_remember() {
        let mut spent: Aged<Spent> = Aged::default();
        let n = SWEEP_FROM + 10;
        for i in 0..n {
            spent.insert(format!("old-{i}"), Spent::Resumed, S(0));
        }
        // One old id is used again late: it stays.
        spent.insert("old-7".into(), Spent::Superseded, S(5000));
        assert_eq!(spent.map.len(), n);
        // Fresh ids past REMEMBER: at the next sweep every untouched old id goes.
        let mut i = 0;
        while spent.get("old-8").is_some() {
            spent.insert(format!("new-{i}"), Spent::Resumed, REMEMBER + S(60));
            i += 1;
            assert!(i <= 2 * SWEEP_EVERY as usize, "never swept");
        }
        assert_eq!(spent.get("old-7"), Some(&Spent::Superseded));
        assert_eq!(spent.get("old-8"), None);
        assert_eq!(spent.get("new-0"), Some(&Spent::Resumed));
        assert_eq!(spent.map.len(), i + 1);
    }

    #[test]
    fn a_small_aged_map_is_never_swept_and_touch_counts_in_place() {
        let mut counts: Aged<u32> = Aged::default();
        for _ in 0..3 {
            *counts.touch("a", S(0), || 0) += 1;
        }
        for i in 0..2 * SWEEP_EVERY {
            *counts.touch(&format!("b-{i}"), S(100_000), || 0) += 1;
        }
        assert_eq!(counts.get("a"), Some(&3));
        assert_eq!(counts.get("b-0"), Some(&1));
        assert_eq!(counts.get("c"), None);
    }
}

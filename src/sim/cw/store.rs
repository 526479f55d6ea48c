//! The stand-in's metric store: raw datapoints per metric (namespace, name, sorted dimensions),
//! and the statistics GetMetricData asks for, computed from them.
//!
//! Choices where CloudWatch's behaviour is not documented:
//! - Period buckets start at `StartTime` as GetMetricData rounds it (down to the whole minute
//!   for periods of a minute or more, to the second below that; older data as the API reference
//!   says: 5 minutes past 15 days, an hour past 63 days); a bucket's timestamp is its start. A
//!   point belongs to a query when `StartTime <= t < EndTime`.
//! - `pNN` is the nearest-rank percentile over the raw values (weighted by their counts): the
//!   smallest value whose cumulative count reaches `ceil(NN / 100 * total)`. A bucket that holds
//!   statistic sets (`StatisticValues`) has no raw values, so it yields no percentile datapoint.
//! - A query's `Unit`, when given, keeps only points published with that unit.

use std::collections::{BTreeMap, HashMap};

/// CloudWatch's units (`StandardUnit`).
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// One of `UNITS`, by its place there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit(u8);

impl Unit {
    pub const MILLISECONDS: Self = Self(2);
    pub const COUNT: Self = Self(14);

    /// The unit CloudWatch calls `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        let at = UNITS.iter().position(|u| *u == name)?;
        u8::try_from(at).ok().map(Self)
    }

    pub fn name(self) -> &'static str {
        UNITS.get(usize::from(self.0)).copied().unwrap_or("None")
    }
}

/// One metric: what ListMetrics lists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricKey {
    pub namespace: String,
    pub name: String,
    /// Sorted by name; names are unique.
    pub dimensions: Vec<(String, String)>,
}

impl MetricKey {
    pub fn new(namespace: &str, name: &str, mut dimensions: Vec<(String, String)>) -> Self {
        dimensions.sort();
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            dimensions,
        }
    }
}

/// What one datum carried.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    /// One value, occurring once (`Value`).
    Value(f64),
    /// Raw values with how many times each occurred.
    Values(Vec<(f64, f64)>),
    /// A statistic set.
    Stats {
        count: f64,
        sum: f64,
        min: f64,
        max: f64,
    },
}

/// One datapoint, in 32 bytes (it was 64, and a heap block for its one value): a metric may
/// hold `MAX_POINTS` of them, and the simulator writes about two dozen per invocation.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    at_ms: i64,
    sample: Kept,
    unit: Unit,
}

/// A sample as a point keeps it: one value in place (each of Bedrock's own metrics but
/// `ModelLatency` of several model calls, and every PutMetricData `Value`), anything else
/// boxed.
#[derive(Debug, Clone, PartialEq)]
enum Kept {
    Value(f64),
    Other(Box<Sample>),
}

impl From<Sample> for Kept {
    fn from(sample: Sample) -> Self {
        match sample {
            Sample::Value(v) => Self::Value(v),
            other => Self::Other(Box::new(other)),
        }
    }
}

/// A statistic GetMetricData can compute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    SampleCount,
    Average,
    Sum,
    Minimum,
    Maximum,
    /// 0 < p <= 100.
    Percentile(f64),
}

impl Stat {
    /// `Sum`, `Average`, ..., `p95`, `p99.9`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SampleCount" => Some(Self::SampleCount),
            "Average" => Some(Self::Average),
            "Sum" => Some(Self::Sum),
            "Minimum" => Some(Self::Minimum),
            "Maximum" => Some(Self::Maximum),
            _ => {
                let p: f64 = s.strip_prefix('p')?.parse().ok()?;
                (p > 0.0 && p <= 100.0 && s[1..].bytes().all(|b| b.is_ascii_digit() || b == b'.'))
                    .then_some(Self::Percentile(p))
            }
        }
    }
}

/// Everything accumulated in one period bucket.
#[derive(Debug, Default)]
struct Bucket {
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    values: Vec<(f64, f64)>,
    has_stat_sets: bool,
}

impl Bucket {
    fn add(&mut self, kept: &Kept) {
        match kept {
            Kept::Value(v) => self.add_sample(&Sample::Value(*v)),
            Kept::Other(sample) => self.add_sample(sample),
        }
    }

    fn add_sample(&mut self, sample: &Sample) {
        let (count, sum, min, max) = match sample {
            Sample::Value(v) => {
                self.values.push((*v, 1.0));
                (1.0, *v, *v, *v)
            }
            Sample::Values(v) => {
                self.values.extend_from_slice(v);
                let count: f64 = v.iter().map(|(_, c)| c).sum();
                let sum: f64 = v.iter().map(|(x, c)| x * c).sum();
                let min = v.iter().map(|(x, _)| *x).fold(f64::INFINITY, f64::min);
                let max = v.iter().map(|(x, _)| *x).fold(f64::NEG_INFINITY, f64::max);
                (count, sum, min, max)
            }
            Sample::Stats {
                count,
                sum,
                min,
                max,
            } => {
                self.has_stat_sets = true;
                (*count, *sum, *min, *max)
            }
        };
        if self.count == 0.0 {
            self.min = min;
            self.max = max;
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
        self.count += count;
        self.sum += sum;
    }

    fn stat(&mut self, stat: Stat) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        match stat {
            Stat::SampleCount => Some(self.count),
            Stat::Sum => Some(self.sum),
            Stat::Average => Some(self.sum / self.count),
            Stat::Minimum => Some(self.min),
            Stat::Maximum => Some(self.max),
            Stat::Percentile(p) => {
                if self.has_stat_sets {
                    return None;
                }
                percentile(&mut self.values, p)
            }
        }
    }
}

/// Nearest-rank percentile of weighted values (sorts them in place).
pub fn percentile(values: &mut [(f64, f64)], p: f64) -> Option<f64> {
    values.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = values.iter().map(|(_, c)| c).sum();
    if total <= 0.0 {
        return None;
    }
    let rank = (p / 100.0 * total).ceil().max(1.0);
    let mut seen = 0.0;
    for (v, c) in values.iter() {
        seen += c;
        if seen >= rank {
            return Some(*v);
        }
    }
    values.last().map(|(v, _)| *v)
}

/// A query's time frame: `[start, end)` in buckets of `period`, `now` for the rounding rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
    pub period_ms: i64,
    pub now_ms: i64,
}

/// GetMetricData's rounding of `StartTime`.
pub fn round_start(start_ms: i64, period_ms: i64, now_ms: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    let age = now_ms - start_ms;
    let unit = if age > 63 * DAY {
        3_600_000
    } else if age > 15 * DAY {
        300_000
    } else if period_ms >= 60_000 {
        60_000
    } else {
        1_000
    };
    start_ms.div_euclid(unit) * unit
}

/// A ListMetrics filter on one dimension: the name, and the value if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimensionFilter {
    pub name: String,
    pub value: Option<String>,
}

/// Points a metric keeps: the latest it received. The simulator records about two dozen points
/// per invocation, so without a bound a long demo or a load test would grow without end; at
/// 32 bytes a point (`Point`) this is at most ~3.3 MB per metric, and hours of traffic at the
/// demo's rate.
pub const MAX_POINTS: usize = 100_000;

/// Points a series holds in one chunk.
const CHUNK: usize = 4096;

/// One metric's points, oldest first, in chunks of `CHUNK`: a push never moves the points
/// before it (a single vector of 100,000 points was copied whole each time it grew), and the
/// oldest chunk goes at once when the series passes `MAX_POINTS`.
#[derive(Debug, Default)]
struct Series {
    chunks: std::collections::VecDeque<Vec<Point>>,
    len: usize,
}

impl Series {
    fn push(&mut self, p: Point) {
        if self.chunks.back().is_none_or(|c| c.len() == CHUNK) {
            if self.len >= MAX_POINTS + CHUNK {
                // Reuse the oldest chunk's buffer for the newest points.
                if let Some(mut oldest) = self.chunks.pop_front() {
                    self.len -= oldest.len();
                    oldest.clear();
                    self.chunks.push_back(oldest);
                }
            } else {
                self.chunks.push_back(Vec::with_capacity(CHUNK));
            }
        }
        if let Some(last) = self.chunks.back_mut() {
            last.push(p);
            self.len += 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Point> {
        self.chunks.iter().flatten()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }
}

/// The in-memory store.
#[derive(Debug, Default)]
pub struct MetricStore {
    /// Each metric's place in `points`.
    series: BTreeMap<MetricKey, usize>,
    points: Vec<Series>,
    /// Groups of metrics a caller writes over and over (every simulated invocation writes
    /// about two dozen), found by two strings (`group`), so it neither builds their keys nor
    /// searches for them again: each group holds the places of its metrics by a caller-chosen
    /// slot, filled on first use (`put_in`).
    groups: Vec<Vec<Option<usize>>>,
    group_ids: HashMap<String, HashMap<String, usize>>,
}

impl MetricStore {
    /// Adds a point; past `MAX_POINTS` for the metric, its earliest received ones are dropped
    /// (in amortised batches, so a put stays cheap).
    pub fn put(&mut self, key: MetricKey, at_ms: i64, unit: Unit, sample: Sample) {
        let at = self.place(key);
        self.push(at, at_ms, unit, sample);
    }

    /// The group of metrics named by `outer` and `inner` (see `groups`), new if need be.
    pub fn group(&mut self, outer: &str, inner: &str) -> usize {
        if let Some(&id) = self.group_ids.get(outer).and_then(|m| m.get(inner)) {
            return id;
        }
        let id = self.groups.len();
        self.groups.push(Vec::new());
        self.group_ids
            .entry(outer.to_owned())
            .or_default()
            .insert(inner.to_owned(), id);
        id
    }

    /// `put` to the metric in `slot` of `group`; `key` is built only the first time.
    pub fn put_in(
        &mut self,
        (group, slot): (usize, usize),
        key: impl FnOnce() -> MetricKey,
        at_ms: i64,
        unit: Unit,
        sample: Sample,
    ) {
        let known = self.groups[group].get(slot).copied().flatten();
        let at = if let Some(at) = known {
            at
        } else {
            let at = self.place(key());
            let slots = &mut self.groups[group];
            if slots.len() <= slot {
                slots.resize(slot + 1, None);
            }
            slots[slot] = Some(at);
            at
        };
        self.push(at, at_ms, unit, sample);
    }

    /// Where `key`'s points are, a new empty series if it has none yet.
    fn place(&mut self, key: MetricKey) -> usize {
        let next = self.points.len();
        let at = *self.series.entry(key).or_insert(next);
        if at == next {
            self.points.push(Series::default());
        }
        at
    }

    fn push(&mut self, at: usize, at_ms: i64, unit: Unit, sample: Sample) {
        self.points[at].push(Point {
            at_ms,
            sample: sample.into(),
            unit,
        });
    }

    /// The points of the metric `key`, if it has any.
    fn points_of(&self, key: &MetricKey) -> Option<&Series> {
        self.series.get(key).map(|&at| &self.points[at])
    }

    /// Metrics matching the filters, in key order; `recent_since_ms` keeps only metrics with a
    /// point at or after it (ListMetrics' `RecentlyActive`).
    pub fn list(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
        filters: &[DimensionFilter],
        recent_since_ms: Option<i64>,
    ) -> Vec<&MetricKey> {
        self.series
            .iter()
            .filter(|&(k, &at)| {
                let points = &self.points[at];
                namespace.is_none_or(|n| k.namespace == n)
                    && name.is_none_or(|n| k.name == n)
                    && filters.iter().all(|f| {
                        k.dimensions.iter().any(|(dn, dv)| {
                            *dn == f.name && f.value.as_ref().is_none_or(|v| v == dv)
                        })
                    })
                    && recent_since_ms.is_none_or(|t| points.iter().any(|p| p.at_ms >= t))
            })
            .map(|(k, _)| k)
            .collect()
    }

    /// `(bucket start ms, value)` in ascending time for one metric and statistic.
    pub fn series(
        &self,
        key: &MetricKey,
        stat: Stat,
        window: &Window,
        unit: Option<&str>,
    ) -> Vec<(i64, f64)> {
        let Window {
            start_ms,
            end_ms,
            period_ms,
            now_ms,
        } = *window;
        let Some(points) = self.points_of(key) else {
            return Vec::new();
        };
        let period_ms = period_ms.max(1);
        let start_ms = round_start(start_ms, period_ms, now_ms);
        let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
        for p in points.iter() {
            if p.at_ms < start_ms || p.at_ms >= end_ms || unit.is_some_and(|u| u != p.unit.name()) {
                continue;
            }
            let at = start_ms + (p.at_ms - start_ms).div_euclid(period_ms) * period_ms;
            buckets.entry(at).or_default().add(&p.sample);
        }
        buckets
            .into_iter()
            .filter_map(|(at, mut b)| b.stat(stat).map(|v| (at, v)))
            .collect()
    }

    /// How many metrics are held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_put_by_slot_lands_in_the_metric_its_key_names() {
        let mut store = MetricStore::default();
        let one = || Sample::Value(1.0);
        let g = store.group("arn:alias/A", "model-1");
        assert_eq!(store.group("arn:alias/A", "model-1"), g);
        assert_ne!(store.group("arn:alias/B", "model-1"), g);
        assert_ne!(store.group("arn:alias/A", "model-2"), g);
        store.put_in((g, 3), key, 1, Unit::COUNT, one());
        // The key is built on the slot's first use only.
        let mut built = 0;
        store.put_in(
            (g, 3),
            || {
                built += 1;
                key()
            },
            2,
            Unit::COUNT,
            one(),
        );
        assert_eq!(built, 0);
        // A plain put with the same key, and another group's slot, reach the same metric.
        store.put(key(), 3, Unit::COUNT, one());
        let other = store.group("arn:alias/B", "model-1");
        store.put_in((other, 0), key, 4, Unit::COUNT, one());
        assert_eq!(store.len(), 1);
        let at: Vec<i64> = store
            .points_of(&key())
            .unwrap()
            .iter()
            .map(|p| p.at_ms)
            .collect();
        assert_eq!(at, [1, 2, 3, 4]);
    }

    #[test]
    fn a_metric_keeps_its_latest_points_only() {
        let mut store = MetricStore::default();
        let total = MAX_POINTS + MAX_POINTS / 2;
        for i in 0..total {
            store.put(key(), i as i64, Unit::COUNT, Sample::Value(1.0));
            assert!(store.points_of(&key()).unwrap().len() <= MAX_POINTS + 2 * CHUNK);
        }
        let points = store.points_of(&key()).unwrap();
        assert!(points.len() >= MAX_POINTS, "{}", points.len());
        // The newest is kept, the oldest went, and the order is the order received.
        let at: Vec<i64> = points.iter().map(|p| p.at_ms).collect();
        assert_eq!(at.len(), points.len());
        assert_eq!(at.last(), Some(&(total as i64 - 1)));
        assert!(at[0] > 0);
        assert!(at.windows(2).all(|w| w[1] == w[0] + 1));
    }

    const NOW: i64 = 1_000_000;

    fn w(start_ms: i64, end_ms: i64, period_ms: i64) -> Window {
        Window {
            start_ms,
            end_ms,
            period_ms,
            now_ms: NOW,
        }
    }

    fn none() -> Unit {
        Unit::parse("None").unwrap()
    }

    #[test]
    fn units_are_named_by_their_place() {
        assert_eq!(Unit::COUNT.name(), "Count");
        assert_eq!(Unit::MILLISECONDS.name(), "Milliseconds");
        for name in UNITS {
            assert_eq!(Unit::parse(name).unwrap().name(), *name);
        }
        assert_eq!(Unit::parse("count"), None);
        assert_eq!(Unit::parse("Furlongs"), None);
    }

    #[test]
    fn a_point_is_32_bytes_and_keeps_every_kind_of_sample() {
        assert_eq!(std::mem::size_of::<Point>(), 32);
        let mut s = MetricStore::default();
        s.put(key(), 0, Unit::COUNT, Sample::Value(4.0));
        s.put(
            key(),
            1,
            Unit::COUNT,
            Sample::Values(vec![(1.0, 2.0), (10.0, 1.0)]),
        );
        s.put(key(), 2, Unit::COUNT, Sample::Value(-3.0));
        let all = w(0, 60_000, 60_000);
        let stat = |st| s.series(&key(), st, &all, None);
        assert_eq!(stat(Stat::SampleCount), vec![(0, 5.0)]);
        assert_eq!(stat(Stat::Sum), vec![(0, 13.0)]);
        assert_eq!(stat(Stat::Minimum), vec![(0, -3.0)]);
        assert_eq!(stat(Stat::Maximum), vec![(0, 10.0)]);
        assert_eq!(stat(Stat::Percentile(50.0)), vec![(0, 1.0)]);
        assert_eq!(stat(Stat::Percentile(100.0)), vec![(0, 10.0)]);
        s.put(
            key(),
            3,
            Unit::COUNT,
            Sample::Stats {
                count: 1.0,
                sum: 20.0,
                min: 20.0,
                max: 20.0,
            },
        );
        assert_eq!(s.series(&key(), Stat::Maximum, &all, None), vec![(0, 20.0)]);
        assert!(
            s.series(&key(), Stat::Percentile(50.0), &all, None)
                .is_empty()
        );
        assert!(s.series(&key(), Stat::Sum, &all, Some("None")).is_empty());
    }

    fn key() -> MetricKey {
        MetricKey::new(
            "NS",
            "Latency",
            vec![("B".into(), "2".into()), ("A".into(), "1".into())],
        )
    }

    #[test]
    fn percentiles_are_nearest_rank_over_weighted_values() {
        let mut v: Vec<(f64, f64)> = (1..=100).rev().map(|x| (f64::from(x), 1.0)).collect();
        assert_eq!(percentile(&mut v, 95.0), Some(95.0));
        assert_eq!(percentile(&mut v, 50.0), Some(50.0));
        assert_eq!(percentile(&mut v, 100.0), Some(100.0));
        assert_eq!(percentile(&mut v, 0.5), Some(1.0));
        // 90 fast calls and 10 slow ones: p90 is fast, p91 slow.
        let mut w = vec![(10.0, 90.0), (500.0, 10.0)];
        assert_eq!(percentile(&mut w, 90.0), Some(10.0));
        assert_eq!(percentile(&mut w, 91.0), Some(500.0));
    }

    #[test]
    fn buckets_align_to_the_period_and_keep_the_window() {
        let mut s = MetricStore::default();
        for (t, v) in [(0, 1.0), (59_999, 3.0), (60_000, 10.0), (120_000, 100.0)] {
            s.put(key(), t, Unit::MILLISECONDS, Sample::Value(v));
        }
        s.put(
            key(),
            61_000,
            Unit::MILLISECONDS,
            Sample::Stats {
                count: 2.0,
                sum: 30.0,
                min: 5.0,
                max: 25.0,
            },
        );
        let sum = s.series(&key(), Stat::Sum, &w(0, 120_000, 60_000), None);
        assert_eq!(sum, vec![(0, 4.0), (60_000, 40.0)]);
        let avg = s.series(&key(), Stat::Average, &w(0, 180_000, 60_000), None);
        assert_eq!(avg, vec![(0, 2.0), (60_000, 40.0 / 3.0), (120_000, 100.0)]);
        let min = s.series(&key(), Stat::Minimum, &w(0, 180_000, 60_000), None);
        assert_eq!(min[1], (60_000, 5.0));
        let n = s.series(&key(), Stat::SampleCount, &w(0, 180_000, 60_000), None);
        assert_eq!(n[1], (60_000, 3.0));
        // The bucket with a statistic set has no percentile.
        let p = s.series(&key(), Stat::Percentile(50.0), &w(0, 180_000, 60_000), None);
        assert_eq!(p, vec![(0, 1.0), (120_000, 100.0)]);
        assert!(
            s.series(&key(), Stat::Sum, &w(0, 180_000, 60_000), Some("Count"))
                .is_empty()
        );
    }

    #[test]
    fn list_filters_by_namespace_name_and_dimensions() {
        let mut s = MetricStore::default();
        s.put(key(), 0, none(), Sample::Value(1.0));
        s.put(
            MetricKey::new("NS", "Count", vec![("A".into(), "9".into())]),
            5_000,
            none(),
            Sample::Values(vec![(1.0, 1.0)]),
        );
        let f = |name: &str, value: Option<&str>| DimensionFilter {
            name: name.into(),
            value: value.map(Into::into),
        };
        assert_eq!(s.list(Some("NS"), None, &[], None).len(), 2);
        assert_eq!(s.list(Some("Other"), None, &[], None).len(), 0);
        assert_eq!(s.list(None, Some("Count"), &[], None).len(), 1);
        assert_eq!(s.list(None, None, &[f("B", None)], None)[0].name, "Latency");
        assert_eq!(
            s.list(None, None, &[f("A", Some("9"))], None)[0].name,
            "Count"
        );
        assert!(s.list(None, None, &[f("A", Some("3"))], None).is_empty());
        assert_eq!(s.list(None, None, &[], Some(1_000)).len(), 1);
        assert_eq!(key().dimensions[0].0, "A");
    }

    #[test]
    fn buckets_start_at_the_rounded_start_time() {
        let mut s = MetricStore::default();
        for t in [30_000, 89_000, 90_000, 150_000] {
            s.put(key(), t, none(), Sample::Value(1.0));
        }
        // 30.5 s rounds down to 0 for a 60 s period, and the window starts there: buckets
        // [0, 60), [60, 120), [120, 180).
        let n = s.series(&key(), Stat::SampleCount, &w(30_500, 180_000, 60_000), None);
        assert_eq!(n, vec![(0, 1.0), (60_000, 2.0), (120_000, 1.0)]);
        // A 30 s period rounds to the second: buckets from 30 s.
        let n = s.series(&key(), Stat::SampleCount, &w(30_000, 180_000, 30_000), None);
        assert_eq!(
            n,
            vec![(30_000, 1.0), (60_000, 1.0), (90_000, 1.0), (150_000, 1.0)]
        );
        assert_eq!(
            round_start(20 * 86_400_000 + 299_999, 60_000, 40 * 86_400_000),
            20 * 86_400_000
        );
    }

    #[test]
    fn stats_parse_names_and_percentiles() {
        assert_eq!(Stat::parse("p95"), Some(Stat::Percentile(95.0)));
        assert_eq!(Stat::parse("p99.9"), Some(Stat::Percentile(99.9)));
        assert_eq!(Stat::parse("Sum"), Some(Stat::Sum));
        for bad in ["p0", "p101", "pX", "tm99", "sum", "p-5", "p1e2"] {
            assert_eq!(Stat::parse(bad), None, "{bad}");
        }
    }
}

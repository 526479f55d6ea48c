//! Fault injection: what can go wrong on the wire (throttling, exception frames, slow frames,
//! stalls, dropped connections, corrupt frames, frames split across HTTP chunks), parsed from
//! `--faults` or a scenario's `faults` string, and drawn per invocation from the seeded
//! generator.

use std::fmt::Write as _;
use std::time::Duration;

use super::error::{AwsError, SimError, exception_from_name};

/// A fault that strikes an invocation with some probability (1.0 = always).
#[derive(Debug, Clone, PartialEq)]
pub struct Chance<T> {
    pub value: T,
    pub probability: f64,
}

/// An exception frame sent after `after_frames` event frames, ending the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionFault {
    pub after_frames: u32,
    /// camelCase `:exception-type`, e.g. `internalServerException`.
    pub exception_type: String,
}

/// How to damage one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrupt {
    /// Flip one payload byte: the message CRC no longer matches.
    Flip,
    /// Send only the first part of a frame, then end the body cleanly.
    Truncate,
}

/// Faults applied to every InvokeAgent call. Delays given here are wall-clock time: they are not
/// scaled by `time_scale`, so a stall also stalls a test that runs with `time_scale = 0`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Probability of answering 429 ThrottlingException before any frame.
    pub throttle: f64,
    pub exception: Option<Chance<ExceptionFault>>,
    /// Delay before every frame.
    pub slow: Option<Duration>,
    /// Stop sending for this long at a seeded point mid-stream, then carry on.
    pub stall: Option<Chance<Duration>>,
    /// Close the connection after this many frames, without ending the chunked body.
    pub drop: Option<Chance<u32>>,
    pub corrupt: Option<Chance<Corrupt>>,
    /// Probability that an event frame is sent as two HTTP chunks, written apart, so a client
    /// must reassemble it (the service's frames may be split so; by default each frame is one
    /// chunk).
    pub split: f64,
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = number.trim().parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

fn parse_probability(text: &str) -> Option<f64> {
    let p: f64 = text.trim().parse().ok()?;
    (0.0..=1.0).contains(&p).then_some(p)
}

fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl Faults {
    /// Parse `throttle=0.1,exception=3:throttlingException@0.5,slow=20ms,stall=5s@0.2,drop=4,corrupt=flip,split=0.25`.
    ///
    /// Keys: `throttle=P`; `exception=N[:type][@P]`; `slow=DUR`; `stall=DUR[@P]`; `drop=N[@P]`;
    /// `corrupt=flip|truncate[@P]`; `split=P` (per frame). DUR is `250ms`, `5s`, `1.5s` or
    /// `2m`; P is in 0..=1.
    pub fn parse(spec: &str) -> Result<Self, SimError> {
        let mut faults = Self::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = |why: &str| SimError::Faults(item.to_owned(), why.to_owned());
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| bad("expected key=value"))?;
            let (value, probability) = match value.split_once('@') {
                Some((v, p)) => (
                    v,
                    parse_probability(p).ok_or_else(|| bad("probability must be in 0..=1"))?,
                ),
                None => (value, 1.0),
            };
            match key.trim() {
                "throttle" => {
                    faults.throttle = parse_probability(value)
                        .ok_or_else(|| bad("throttle=P with P in 0..=1"))?;
                }
                "exception" => {
                    let (n, kind) = value
                        .split_once(':')
                        .unwrap_or((value, "internalServerException"));
                    let after_frames = n
                        .trim()
                        .parse()
                        .map_err(|_| bad("exception=N[:type], N frames first"))?;
                    if exception_from_name(kind, "").is_none() {
                        return Err(bad(
                            "unknown exception type (use e.g. internalServerException, throttlingException, dependencyFailedException)",
                        ));
                    }
                    faults.exception = Some(Chance {
                        value: ExceptionFault {
                            after_frames,
                            exception_type: kind.to_owned(),
                        },
                        probability,
                    });
                }
                "slow" => {
                    faults.slow =
                        Some(parse_duration(value).ok_or_else(|| bad("slow=DUR, e.g. 50ms"))?);
                }
                "stall" => {
                    let value = parse_duration(value).ok_or_else(|| bad("stall=DUR, e.g. 5s"))?;
                    faults.stall = Some(Chance { value, probability });
                }
                "drop" => {
                    let value = value
                        .trim()
                        .parse()
                        .map_err(|_| bad("drop=N: close after N frames"))?;
                    faults.drop = Some(Chance { value, probability });
                }
                "corrupt" => {
                    let value = match value.trim() {
                        "flip" => Corrupt::Flip,
                        "truncate" => Corrupt::Truncate,
                        _ => return Err(bad("corrupt=flip|truncate")),
                    };
                    faults.corrupt = Some(Chance { value, probability });
                }
                "split" => {
                    faults.split = parse_probability(value)
                        .filter(|_| !item.contains('@'))
                        .ok_or_else(|| bad("split=P with P in 0..=1, per frame"))?;
                }
                _ => {
                    return Err(bad(
                        "unknown fault (throttle, exception, slow, stall, drop, corrupt, split)",
                    ));
                }
            }
        }
        Ok(faults)
    }

    /// Faults set in `other` replace those in `self`.
    #[must_use]
    pub fn merged(mut self, other: &Self) -> Self {
        if other.throttle > 0.0 {
            self.throttle = other.throttle;
        }
        if other.exception.is_some() {
            self.exception.clone_from(&other.exception);
        }
        if other.slow.is_some() {
            self.slow = other.slow;
        }
        if other.stall.is_some() {
            self.stall.clone_from(&other.stall);
        }
        if other.drop.is_some() {
            self.drop.clone_from(&other.drop);
        }
        if other.corrupt.is_some() {
            self.corrupt.clone_from(&other.corrupt);
        }
        if other.split > 0.0 {
            self.split = other.split;
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The same syntax `parse` reads.
    pub fn describe(&self) -> String {
        let mut out = Vec::new();
        let at = |p: f64| {
            if (p - 1.0).abs() < f64::EPSILON {
                String::new()
            } else {
                format!("@{p}")
            }
        };
        if self.throttle > 0.0 {
            out.push(format!("throttle={}", self.throttle));
        }
        if let Some(c) = &self.exception {
            out.push(format!(
                "exception={}:{}{}",
                c.value.after_frames,
                c.value.exception_type,
                at(c.probability)
            ));
        }
        if let Some(d) = self.slow {
            out.push(format!("slow={}", format_duration(d)));
        }
        if let Some(c) = &self.stall {
            out.push(format!(
                "stall={}{}",
                format_duration(c.value),
                at(c.probability)
            ));
        }
        if let Some(c) = &self.drop {
            out.push(format!("drop={}{}", c.value, at(c.probability)));
        }
        if let Some(c) = &self.corrupt {
            let mut s = String::from("corrupt=");
            let _ = write!(
                s,
                "{}{}",
                match c.value {
                    Corrupt::Flip => "flip",
                    Corrupt::Truncate => "truncate",
                },
                at(c.probability)
            );
            out.push(s);
        }
        if self.split > 0.0 {
            out.push(format!("split={}", self.split));
        }
        out.join(",")
    }

    /// Draw this invocation's faults for a stream of `frames` event frames.
    pub(crate) fn plan(&self, rng: &mut fastrand::Rng, frames: usize) -> FaultPlan {
        let mut hit = |p: f64| p >= 1.0 || (p > 0.0 && rng.f64() < p);
        let exception = self.exception.as_ref().and_then(|c| {
            hit(c.probability).then(|| {
                let error = exception_from_name(
                    &c.value.exception_type,
                    "The simulator injected this exception (fault exception).",
                )
                .unwrap_or_else(|| AwsError::internal("injected"));
                (c.value.after_frames as usize, error)
            })
        });
        let drop_after = self
            .drop
            .as_ref()
            .and_then(|c| hit(c.probability).then_some(c.value as usize));
        let stall = self
            .stall
            .as_ref()
            .and_then(|c| hit(c.probability).then_some(c.value));
        let corrupt = self
            .corrupt
            .as_ref()
            .and_then(|c| hit(c.probability).then_some(c.value));
        let spot = |rng: &mut fastrand::Rng| {
            if frames <= 1 { 0 } else { rng.usize(1..frames) }
        };
        FaultPlan {
            exception,
            drop_after,
            stall: stall.map(|d| (spot(rng), d)),
            corrupt: corrupt.map(|c| (spot(rng), c)),
            slow: self.slow,
            split: self.split,
        }
    }
}

/// The faults drawn for one invocation: frame indexes are positions in its event stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultPlan {
    pub exception: Option<(usize, AwsError)>,
    pub drop_after: Option<usize>,
    pub stall: Option<(usize, Duration)>,
    pub corrupt: Option<(usize, Corrupt)>,
    pub slow: Option<Duration>,
    /// `Faults::split`, drawn per frame as it is sent.
    pub split: f64,
}

impl FaultPlan {
    /// Whether no fault touches this invocation's stream.
    pub fn is_clean(&self) -> bool {
        self.exception.is_none()
            && self.drop_after.is_none()
            && self.stall.is_none()
            && self.corrupt.is_none()
            && self.slow.is_none()
            && self.split <= 0.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_fault_and_describes_it_back() {
        let spec = "throttle=0.1,exception=3:throttlingException@0.5,slow=20ms,stall=5s@0.2,drop=4,corrupt=flip,split=0.25";
        let f = Faults::parse(spec).unwrap();
        assert!((f.throttle - 0.1).abs() < 1e-9);
        assert_eq!(f.exception.as_ref().unwrap().value.after_frames, 3);
        assert_eq!(f.slow, Some(Duration::from_millis(20)));
        assert_eq!(f.stall.as_ref().unwrap().value, Duration::from_secs(5));
        assert_eq!(f.drop.as_ref().unwrap().value, 4);
        assert_eq!(f.corrupt.as_ref().unwrap().value, Corrupt::Flip);
        assert!((f.split - 0.25).abs() < 1e-9);
        assert_eq!(f.describe(), spec);
        assert_eq!(Faults::parse(&f.describe()).unwrap(), f);
    }

    #[test]
    fn rejects_bad_specs_with_the_item() {
        for bad in [
            "throttle=2",
            "stall=5x",
            "nope=1",
            "exception=1:bogus",
            "drop",
            "corrupt=melt",
            "split=2",
            "split=0.5@0.5",
        ] {
            let e = Faults::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad.split(',').next().unwrap()), "{e}");
        }
        assert!(Faults::parse("").unwrap().is_empty());
    }

    #[test]
    fn zero_probability_never_strikes() {
        let f = Faults::parse("throttle=0,drop=1@0").unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..100 {
            let p = f.plan(&mut rng, 10);
            assert!(p.drop_after.is_none());
        }
    }
}

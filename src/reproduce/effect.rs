//! Effects: who beats whom, by how much, in the paper and in netc, and whether they agree.
//!
//! A row of a results table is either a *level* (netc's number next to the paper's, e.g. S1's
//! 92.13 % test accuracy) or an *effect* (the difference between two of netc's runs next to the
//! paper's difference, e.g. noise-free minus noisy programming). Every row gets a direction
//! (`higher`, `lower`, `same` within a tolerance in percentage points) for netc, and an
//! agreement with what the paper reports: `yes` (same direction, size within the tolerance
//! stated below), `direction only` (same direction, size off), `no`, or `n/a` when the paper
//! gives nothing to compare with.

use serde::{Deserialize, Serialize};

/// Direction of a difference (b − a) or of netc's number against the paper's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Higher,
    Lower,
    Same,
}

impl Direction {
    /// `Same` when |delta| < `same_within` (percentage points), else the sign.
    pub fn of(delta: f64, same_within: f64) -> Direction {
        if delta.abs() < same_within || delta == 0.0 {
            Direction::Same
        } else if delta > 0.0 {
            Direction::Higher
        } else {
            Direction::Lower
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Direction::Higher => "higher",
            Direction::Lower => "lower",
            Direction::Same => "same",
        }
    }
}

/// What the paper reports for a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Expect {
    /// A difference of this size (percentage points; sign = direction).
    Delta { points: f64 },
    /// A difference in this range (points), e.g. S3's "2–4 % below": `lo -4, hi -2`.
    Range { lo: f64, hi: f64 },
    /// Only a direction (the paper gives no size, e.g. S4's "Manhattan did worse").
    Direction { direction: Direction },
    /// An absolute level (percent): netc should be within `within` points of it.
    Level { value: f64, within: f64 },
    /// An absolute bound (percent): netc should be above it (S3: "> 60 % at 50 % stuck").
    Above { value: f64 },
    /// The paper reports nothing comparable.
    NotReported,
}

/// Agreement of netc with the paper on one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agreement {
    Yes,
    DirectionOnly,
    No,
    NotApplicable,
}

impl Agreement {
    pub fn word(self) -> &'static str {
        match self {
            Agreement::Yes => "yes",
            Agreement::DirectionOnly => "direction only",
            Agreement::No => "no",
            Agreement::NotApplicable => "n/a",
        }
    }
}

/// Tolerance on the size of an effect: netc's difference is "the same size" as the paper's if it
/// is within `max(SIZE_ABS_POINTS, SIZE_REL · |paper|)` of it. Our data sets are 8,000/2,000
/// digits (not 60,000/10,000), so sizes are compared loosely on purpose.
pub const SIZE_ABS_POINTS: f64 = 2.0;
pub const SIZE_REL: f64 = 0.5;

impl Expect {
    /// The paper's direction, if it gives one (`same_within` in points decides `Same` for a
    /// stated difference).
    pub fn direction(&self, same_within: f64) -> Option<Direction> {
        match *self {
            Expect::Delta { points } => Some(Direction::of(points, same_within)),
            Expect::Range { lo, hi } => {
                let (dlo, dhi) = (
                    Direction::of(lo, same_within),
                    Direction::of(hi, same_within),
                );
                if dlo == dhi {
                    Some(dlo)
                } else {
                    None
                }
            }
            Expect::Direction { direction } => Some(direction),
            Expect::Level { .. } | Expect::Above { .. } | Expect::NotReported => None,
        }
    }

    /// Does netc's number (`netc`: a difference in points for effects, a percentage for
    /// levels) agree with the paper?
    pub fn agreement(&self, netc: f64, same_within: f64) -> Agreement {
        if !netc.is_finite() {
            return Agreement::No;
        }
        let nd = Direction::of(netc, same_within);
        let size_ok =
            |paper: f64| (netc - paper).abs() <= SIZE_ABS_POINTS.max(SIZE_REL * paper.abs());
        match *self {
            Expect::Delta { points } => {
                if Direction::of(points, same_within) != nd {
                    Agreement::No
                } else if size_ok(points) {
                    Agreement::Yes
                } else {
                    Agreement::DirectionOnly
                }
            }
            Expect::Range { lo, hi } => {
                let (lo, hi) = (lo.min(hi), lo.max(hi));
                if netc >= lo - SIZE_ABS_POINTS / 2.0 && netc <= hi + SIZE_ABS_POINTS / 2.0 {
                    Agreement::Yes
                } else if self.direction(same_within) == Some(nd) {
                    Agreement::DirectionOnly
                } else {
                    Agreement::No
                }
            }
            Expect::Direction { direction } => {
                if direction == nd {
                    Agreement::Yes
                } else {
                    Agreement::No
                }
            }
            Expect::Level { value, within } => {
                if (netc - value).abs() <= within {
                    Agreement::Yes
                } else {
                    Agreement::No
                }
            }
            Expect::Above { value } => {
                if netc > value {
                    Agreement::Yes
                } else {
                    Agreement::No
                }
            }
            Expect::NotReported => Agreement::NotApplicable,
        }
    }

    /// The paper's side of a row, in words.
    pub fn describe(&self, same_within: f64) -> String {
        match *self {
            Expect::Delta { points } => format!(
                "{} ({:+.2} pts)",
                Direction::of(points, same_within).word(),
                points
            ),
            Expect::Range { lo, hi } => format!(
                "{} ({:+.0} to {:+.0} pts)",
                self.direction(same_within).map_or("mixed", Direction::word),
                lo.min(hi),
                lo.max(hi)
            ),
            Expect::Direction { direction } => format!("{} (size not given)", direction.word()),
            Expect::Level { value, within } => format!("{value:.2} % (level, ±{within:.0} pts)"),
            Expect::Above { value } => format!("> {value:.0} %"),
            Expect::NotReported => "not reported".into(),
        }
    }

    /// Whether the row is a level (netc's number against the paper's) rather than a difference.
    pub fn is_level(&self) -> bool {
        matches!(self, Expect::Level { .. } | Expect::Above { .. })
    }
}

/// netc's side of a row, in words: the direction and size of its difference (effects), or how
/// far it is from the paper's level (levels).
pub fn describe_netc(expect: &Expect, netc: f64, same_within: f64) -> String {
    match *expect {
        Expect::Level { value, .. } => {
            let d = netc - value;
            format!(
                "{:.2} % ({}: {:+.2} pts vs the paper)",
                netc,
                Direction::of(d, same_within).word(),
                d
            )
        }
        Expect::Above { value } => format!(
            "{:.2} % ({}: vs {:.0} %)",
            netc,
            Direction::of(netc - value, 0.0).word(),
            value
        ),
        _ => format!(
            "{} ({:+.2} pts)",
            Direction::of(netc, same_within).word(),
            netc
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_has_a_dead_band() {
        assert_eq!(Direction::of(0.4, 1.0), Direction::Same);
        assert_eq!(Direction::of(-0.99, 1.0), Direction::Same);
        assert_eq!(Direction::of(1.0, 1.0), Direction::Higher);
        assert_eq!(Direction::of(-3.0, 1.0), Direction::Lower);
        assert_eq!(Direction::of(0.0, 0.0), Direction::Same);
    }

    #[test]
    fn delta_agreement_direction_and_size() {
        // S1: noise-free ≈ 4 points above noisy programming
        let e = Expect::Delta { points: 4.0 };
        assert_eq!(e.agreement(3.0, 1.0), Agreement::Yes);
        assert_eq!(e.agreement(5.9, 1.0), Agreement::Yes);
        assert_eq!(e.agreement(12.0, 1.0), Agreement::DirectionOnly);
        assert_eq!(e.agreement(1.5, 1.0), Agreement::DirectionOnly);
        assert_eq!(e.agreement(0.5, 1.0), Agreement::No); // netc: no effect
        assert_eq!(e.agreement(-2.0, 1.0), Agreement::No); // netc: reversed
        assert_eq!(e.agreement(f64::NAN, 1.0), Agreement::No);
        // a paper difference inside the dead band is "same"
        let e = Expect::Delta { points: 0.47 };
        assert_eq!(e.direction(1.0), Some(Direction::Same));
        assert_eq!(e.agreement(-0.3, 1.0), Agreement::Yes);
        assert_eq!(e.agreement(-1.6, 1.0), Agreement::No);
    }

    #[test]
    fn range_agreement() {
        // S3: experiment 2–4 points below the defect-free simulation
        let e = Expect::Range { lo: -4.0, hi: -2.0 };
        assert_eq!(e.direction(1.0), Some(Direction::Lower));
        assert_eq!(e.agreement(-3.0, 1.0), Agreement::Yes);
        // one point of slack either side of the paper's range
        assert_eq!(e.agreement(-1.5, 1.0), Agreement::Yes);
        assert_eq!(e.agreement(-4.9, 1.0), Agreement::Yes);
        assert_eq!(e.agreement(-5.5, 1.0), Agreement::DirectionOnly);
        assert_eq!(e.agreement(-9.0, 1.0), Agreement::DirectionOnly);
        assert_eq!(e.agreement(-0.5, 1.0), Agreement::No); // netc: no effect
        assert_eq!(e.agreement(0.2, 1.0), Agreement::No);
        assert_eq!(e.agreement(2.0, 1.0), Agreement::No);
        // bounds in either order
        let e = Expect::Range { lo: -2.0, hi: -4.0 };
        assert_eq!(e.agreement(-3.0, 1.0), Agreement::Yes);
    }

    #[test]
    fn direction_level_and_bound() {
        let e = Expect::Direction {
            direction: Direction::Lower,
        };
        assert_eq!(e.agreement(-5.0, 1.0), Agreement::Yes);
        assert_eq!(e.agreement(0.0, 1.0), Agreement::No);
        let e = Expect::Level {
            value: 92.13,
            within: 5.0,
        };
        assert!(e.is_level());
        assert_eq!(e.direction(1.0), None);
        assert_eq!(e.agreement(88.0, 1.0), Agreement::Yes);
        assert_eq!(e.agreement(86.0, 1.0), Agreement::No);
        let e = Expect::Above { value: 60.0 };
        assert_eq!(e.agreement(61.0, 1.0), Agreement::Yes);
        assert_eq!(e.agreement(59.0, 1.0), Agreement::No);
        assert_eq!(
            Expect::NotReported.agreement(50.0, 1.0),
            Agreement::NotApplicable
        );
    }

    #[test]
    fn descriptions_state_direction_and_size() {
        assert_eq!(
            Expect::Delta { points: -3.28 }.describe(1.0),
            "lower (-3.28 pts)"
        );
        assert_eq!(
            describe_netc(&Expect::Delta { points: -3.28 }, 1.5, 1.0),
            "higher (+1.50 pts)"
        );
        assert_eq!(
            describe_netc(
                &Expect::Level {
                    value: 92.13,
                    within: 5.0
                },
                90.13,
                1.0
            ),
            "90.13 % (lower: -2.00 pts vs the paper)"
        );
        assert_eq!(
            Expect::Range { lo: -4.0, hi: -2.0 }.describe(1.0),
            "lower (-4 to -2 pts)"
        );
    }
}

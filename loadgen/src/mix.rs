//! Client behaviours (`--scenario`) and weighted mixes of them (`--mix`).

use std::fmt;
use std::str::FromStr;

/// What one simulated client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// A Flash Player: send the request, read the policy until the server
    /// closes, check it.
    Good,
    /// Connect and send nothing; wait for the server to close the connection.
    Idle,
    /// Send the request one byte at a time (`--slow-interval` apart), then
    /// read and check the policy like a good client.
    Slow,
    /// Send bytes that are not a policy request (an HTTP request line), then
    /// wait for the server to close.
    Garbage,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 4] = [
        Scenario::Good,
        Scenario::Idle,
        Scenario::Slow,
        Scenario::Garbage,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Good => "good",
            Scenario::Idle => "idle",
            Scenario::Slow => "slow",
            Scenario::Garbage => "garbage",
        }
    }

    /// Position in [`Scenario::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the client expects (and checks) a policy reply.
    pub fn wants_policy(self) -> bool {
        matches!(self, Scenario::Good | Scenario::Slow)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a `--scenario` or `--mix` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MixError {
    /// No scenario has this name.
    UnknownScenario(String),
    /// A weight (in the part given) is not a whole number.
    BadWeight(String),
    /// A scenario appears twice.
    Twice(Scenario),
    /// A weight (in the part given) is over a million.
    WeightTooLarge(String),
    /// Every weight in the mix (given) is 0.
    AllZero(String),
}

impl fmt::Display for MixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MixError::UnknownScenario(s) => {
                let names: Vec<&str> = Scenario::ALL.iter().map(|sc| sc.name()).collect();
                let (last, rest) = names.split_last().map_or(("", &[][..]), |(l, r)| (*l, r));
                write!(
                    f,
                    "unknown scenario {s:?} (use {} or {last})",
                    rest.join(", ")
                )
            }
            MixError::BadWeight(part) => {
                write!(f, "{part:?}: the weight must be a whole number")
            }
            MixError::Twice(sc) => write!(f, "{:?} appears twice in the mix", sc.name()),
            MixError::WeightTooLarge(part) => write!(f, "{part:?}: weight too large"),
            MixError::AllZero(mix) => write!(
                f,
                "{mix:?}: the mix needs at least one scenario with a weight above 0"
            ),
        }
    }
}

impl std::error::Error for MixError {}

impl FromStr for Scenario {
    type Err = MixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s.trim())
            .ok_or_else(|| MixError::UnknownScenario(s.to_string()))
    }
}

/// Relative weights of the scenarios, e.g. `good=90,idle=10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 4],
}

impl Mix {
    /// Every client behaves as `scenario`.
    pub fn only(scenario: Scenario) -> Mix {
        let mut weights = [0; 4];
        weights[scenario.index()] = 1;
        Mix { weights }
    }

    /// The weight of `scenario`.
    pub fn weight(&self, scenario: Scenario) -> u32 {
        self.weights[scenario.index()]
    }

    /// The scenarios with a non-zero weight.
    pub fn scenarios(&self) -> impl Iterator<Item = Scenario> + '_ {
        Scenario::ALL.into_iter().filter(|s| self.weight(*s) > 0)
    }

    /// A deterministic picker that hands out scenarios in these proportions,
    /// evenly interleaved (smooth weighted round robin).
    pub fn picker(&self) -> Picker {
        Picker {
            weights: self.weights.map(i64::from),
            current: [0; 4],
            total: self.weights.iter().map(|&w| i64::from(w)).sum(),
        }
    }
}

impl FromStr for Mix {
    type Err = MixError;
    /// `good=90,idle=10`; a bare name counts as weight 1.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut weights = [0u32; 4];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((n, w)) => {
                    let w: u32 = w
                        .trim()
                        .parse()
                        .map_err(|_| MixError::BadWeight(part.to_string()))?;
                    (n, w)
                }
                None => (part, 1),
            };
            let sc: Scenario = name.parse()?;
            if weights[sc.index()] != 0 {
                return Err(MixError::Twice(sc));
            }
            if weight > 1_000_000 {
                return Err(MixError::WeightTooLarge(part.to_string()));
            }
            weights[sc.index()] = weight;
        }
        if weights.iter().all(|&w| w == 0) {
            return Err(MixError::AllZero(s.to_string()));
        }
        Ok(Mix { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for sc in self.scenarios() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{}={}", sc.name(), self.weight(sc))?;
        }
        Ok(())
    }
}

/// Hands out scenarios in the mix's proportions, evenly spread.
#[derive(Debug, Clone)]
pub struct Picker {
    weights: [i64; 4],
    current: [i64; 4],
    total: i64,
}

impl Picker {
    /// The scenario of the next client.
    pub fn next_scenario(&mut self) -> Scenario {
        let mut best = 0;
        for i in 0..4 {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        Scenario::ALL[best]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mixes() {
        let m: Mix = "good=90,idle=10".parse().expect("valid");
        assert_eq!(m.weight(Scenario::Good), 90);
        assert_eq!(m.weight(Scenario::Idle), 10);
        assert_eq!(m.weight(Scenario::Slow), 0);
        assert_eq!(m.to_string(), "good=90,idle=10");
        let m: Mix = "slow".parse().expect("valid");
        assert_eq!(m, Mix::only(Scenario::Slow));
        assert!("good=x".parse::<Mix>().is_err());
        assert!("bad=1".parse::<Mix>().is_err());
        assert_eq!(
            "evil".parse::<Scenario>().map_err(|e| e.to_string()),
            Err("unknown scenario \"evil\" (use good, idle, slow or garbage)".to_string())
        );
        assert!("good=0".parse::<Mix>().is_err());
        assert!("good=1,good=2".parse::<Mix>().is_err());
        assert!("".parse::<Mix>().is_err());
    }

    #[test]
    fn picker_keeps_proportions_and_interleaves() {
        let m: Mix = "good=90,idle=10".parse().expect("valid");
        let mut p = m.picker();
        let picks: Vec<Scenario> = (0..100).map(|_| p.next_scenario()).collect();
        assert_eq!(picks.iter().filter(|s| **s == Scenario::Idle).count(), 10);
        // Evenly spread: never two idle clients in a row.
        assert!(picks
            .windows(2)
            .all(|w| !(w[0] == Scenario::Idle && w[1] == Scenario::Idle)));
        let m: Mix = "good=1,slow=1,garbage=2".parse().expect("valid");
        let mut p = m.picker();
        let picks: Vec<Scenario> = (0..400).map(|_| p.next_scenario()).collect();
        assert_eq!(
            picks.iter().filter(|s| **s == Scenario::Garbage).count(),
            200
        );
        assert_eq!(picks.iter().filter(|s| **s == Scenario::Slow).count(), 100);
    }
}

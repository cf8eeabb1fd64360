//! Schedules for the blending weight lambda (the seed calls it beta) of the L-Softmax head,
//! section 5.1 of the paper: training starts close to plain softmax (large lambda) and lambda
//! decays each iteration so that the margin takes over.

use serde::{Deserialize, Serialize};

/// How lambda evolves per training iteration.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum LambdaSchedule {
    /// The seed's PyTorch schedule: start at `start`, multiply by `decay` after every iteration,
    /// never below `min` (seed: 100, 0.99, 0).
    Seed {
        /// Initial lambda.
        start: f64,
        /// Factor applied after each iteration.
        decay: f64,
        /// Floor.
        min: f64,
    },
    /// The original Caffe schedule: `lambda = max(base * (1 + gamma * iter)^(-power), min)`.
    Caffe {
        /// Base lambda.
        base: f64,
        /// Gamma.
        gamma: f64,
        /// Power.
        power: f64,
        /// Floor.
        min: f64,
    },
}

impl LambdaSchedule {
    /// The seed's defaults.
    pub const SEED: Self = Self::Seed {
        start: 100.0,
        decay: 0.99,
        min: 0.0,
    };
    /// Defaults for the Caffe-style schedule (base 1000, gamma 2.5e-5, power 35, min 0).
    pub const CAFFE: Self = Self::Caffe {
        base: 1000.0,
        gamma: 2.5e-5,
        power: 35.0,
        min: 0.0,
    };
}

/// The schedule together with where it stands; saved in checkpoints so that a resumed run
/// continues with exactly the same lambdas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LambdaState {
    /// The schedule.
    pub schedule: LambdaSchedule,
    /// Iterations taken so far.
    pub iteration: u64,
    /// For the seed schedule, the running value (updated multiplicatively, as the seed does).
    pub running: f64,
}

impl LambdaState {
    /// The state before the first iteration.
    pub fn new(schedule: LambdaSchedule) -> Self {
        let running = match schedule {
            LambdaSchedule::Seed { start, .. } => start,
            LambdaSchedule::Caffe { base, .. } => base,
        };
        Self {
            schedule,
            iteration: 0,
            running,
        }
    }

    /// The lambda the next iteration will use, without advancing.
    pub fn peek(&self) -> f64 {
        match self.schedule {
            LambdaSchedule::Seed { min, .. } => self.running.max(min),
            LambdaSchedule::Caffe {
                base,
                gamma,
                power,
                min,
            } => (base * (1.0 + gamma * self.iteration as f64).powf(-power)).max(min),
        }
    }

    /// Returns the lambda for this iteration and advances to the next.
    pub fn step(&mut self) -> f64 {
        let used = self.peek();
        if let LambdaSchedule::Seed { decay, .. } = self.schedule {
            self.running = used * decay;
        }
        self.iteration += 1;
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_schedule_decays_geometrically_to_its_floor() {
        let mut s = LambdaState::new(LambdaSchedule::Seed {
            start: 100.0,
            decay: 0.5,
            min: 10.0,
        });
        let got: Vec<f64> = (0..6).map(|_| s.step()).collect();
        assert_eq!(got, vec![100.0, 50.0, 25.0, 12.5, 10.0, 10.0]);
        let mut d = LambdaState::new(LambdaSchedule::SEED);
        let v: Vec<f64> = (0..3).map(|_| d.step()).collect();
        assert_eq!(v, vec![100.0, 99.0, 98.01]);
    }

    #[test]
    fn caffe_schedule_follows_its_formula() {
        let mut s = LambdaState::new(LambdaSchedule::Caffe {
            base: 1000.0,
            gamma: 0.1,
            power: 2.0,
            min: 5.0,
        });
        assert_eq!(s.step(), 1000.0);
        assert!((s.step() - 1000.0 / 1.21).abs() < 1e-9);
        for _ in 0..1000 {
            s.step();
        }
        assert_eq!(s.step(), 5.0);
    }
}

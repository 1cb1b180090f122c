//! `serve smtp`'s chaos, for testing how a sender copes with a server
//! that refuses for now, refuses a password, or drops the line: each
//! decision a roll of seeded dice, so a session stays pure and a test can
//! repeat one exactly.

/// How often each fault happens, 0 to 1.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Chaos {
    /// MAIL answered 451 (`--chaos-sender`).
    pub sender: f64,
    /// RCPT answered 451 (`--chaos-recipient`).
    pub recipient: f64,
    /// Good credentials answered 535 (`--chaos-auth`).
    pub auth: f64,
    /// The connection dropped in the middle of DATA (`--chaos-disconnect`).
    pub disconnect: f64,
}

/// Seeded dice (xorshift64*): the same seed, the same rolls.
#[derive(Clone, Debug)]
pub struct Dice(u64);

impl Dice {
    /// Dice from `seed` (any value; 0 is moved off the one fixed point).
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// True with probability `p` (never for 0 or less, always for 1 or
    /// more).
    pub fn hit(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let roll = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        roll < p
    }
}

/// A probability from the command line: a number from 0 to 1.
///
/// # Errors
/// Anything else, said plainly.
pub fn parse_probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "'{text}' is not a probability (0 to 1, such as 0.1)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dice_keep_to_the_odds() {
        let mut dice = Dice::new(42);
        let hits = (0..10_000).filter(|_| dice.hit(0.25)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
        assert!(!(0..100).any(|_| dice.hit(0.0)));
        assert!((0..100).all(|_| dice.hit(1.0)));
        let (mut a, mut b) = (Dice::new(7), Dice::new(7));
        assert!(
            (0..100).all(|_| a.hit(0.5) == b.hit(0.5)),
            "the same seed, the same rolls"
        );
    }

    #[test]
    fn probabilities_from_text() {
        assert_eq!(parse_probability("0.1"), Ok(0.1));
        assert!(parse_probability("1.5").is_err());
        assert!(parse_probability("often").is_err());
    }
}

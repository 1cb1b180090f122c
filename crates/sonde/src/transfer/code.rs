//! The code phrase of `send`/`receive --code`: a number and three words
//! (`7-sunset-harbor-lemon`) from sonde's own list of 256, made from
//! random bytes and read back leniently (any case, `-` or spaces). Pure:
//! the caller brings the randomness.

/// The most a code's number may be (1 to this).
pub const MAX_NUMBER: u8 = 99;

/// Words in a code.
pub const WORDS_IN_CODE: usize = 3;

/// How many bits of a secret a code holds: log2(99) + 3 × 8.
pub const ENTROPY_BITS: f64 = 30.6;

/// sonde's words: short, common, distinct in their first letters enough
/// to be read aloud. 256, so that one random byte picks one evenly.
pub const WORDS: [&str; 256] = [
    "acorn", "actor", "adobe", "agent", "alarm", "album", "alley", "amber", "anchor", "angel",
    "ankle", "apple", "apron", "arena", "arrow", "aspen", "atlas", "attic", "autumn", "avenue",
    "bacon", "badge", "bagel", "baker", "bamboo", "banjo", "barley", "barn", "basil", "basket",
    "beach", "beacon", "bean", "beaver", "bell", "bench", "berry", "bike", "birch", "bison",
    "blanket", "blossom", "boat", "bonnet", "border", "bottle", "boulder", "bread", "breeze",
    "brick", "bridge", "brook", "broom", "bubble", "bucket", "buffalo", "bunny", "butter", "cabin",
    "cactus", "camel", "camera", "candle", "canoe", "canyon", "carbon", "carpet", "carrot",
    "castle", "cedar", "cellar", "cherry", "chess", "chimney", "cider", "circus", "citrus",
    "clover", "cobalt", "cocoa", "comet", "compass", "copper", "coral", "cotton", "cougar",
    "cradle", "crane", "crater", "crayon", "cricket", "crystal", "cupcake", "daisy", "dancer",
    "delta", "desert", "diamond", "dinner", "dolphin", "donkey", "dragon", "drum", "eagle",
    "easel", "echo", "eclipse", "elbow", "ember", "engine", "falcon", "feather", "fern", "ferry",
    "fiddle", "field", "fig", "finch", "fjord", "flame", "flute", "forest", "fossil", "fox",
    "galaxy", "garden", "garlic", "gecko", "ginger", "glacier", "globe", "goose", "grape",
    "gravel", "guitar", "hammer", "harbor", "harvest", "hazel", "helmet", "heron", "hickory",
    "honey", "horizon", "hornet", "igloo", "island", "ivory", "jacket", "jaguar", "jasmine",
    "jelly", "jersey", "jewel", "jigsaw", "jungle", "kayak", "kettle", "kiwi", "koala", "ladder",
    "lagoon", "lantern", "laurel", "lemon", "lentil", "lilac", "linen", "lizard", "llama",
    "lobster", "locket", "lotus", "magnet", "mango", "maple", "marble", "meadow", "melon",
    "meteor", "mint", "mirror", "mitten", "monkey", "mosaic", "moss", "muffin", "nectar", "needle",
    "nickel", "noodle", "nutmeg", "oak", "oasis", "ocean", "olive", "onion", "orange", "orbit",
    "orchid", "otter", "owl", "oyster", "paddle", "pancake", "panda", "papaya", "parrot", "pasta",
    "peach", "pebble", "pelican", "pepper", "piano", "pickle", "pigeon", "pillow", "pine",
    "planet", "plum", "pony", "poppy", "potato", "pretzel", "pumpkin", "quail", "quartz", "quilt",
    "rabbit", "radio", "radish", "raven", "reef", "ribbon", "river", "robin", "rocket", "saddle",
    "salmon", "sandal", "satin", "scarf", "sequoia", "shadow", "shell", "sierra", "silver",
    "sketch", "sparrow", "spinach", "spruce", "squash", "squid", "stable", "star", "sunset",
];

/// A code that cannot be one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodeError {
    /// Not NUMBER-WORD-WORD-WORD.
    #[error("{0:?} is not a code: it is a number and three words, as 7-sunset-harbor-lemon")]
    Shape(String),
    /// A word that is not on the list: a typo.
    #[error("{0:?} is not one of sonde's code words (a typo?)")]
    Word(String),
}

/// A new code from random bytes: the first picks the number (bytes past
/// the last whole multiple of 99 are skipped, so every number is as
/// likely), the next three the words. `None` when the bytes ran out.
pub fn generate(random: &[u8]) -> Option<String> {
    let limit = 256 - 256 % u16::from(MAX_NUMBER);
    let mut bytes = random.iter().copied();
    let number = bytes.by_ref().find(|b| u16::from(*b) < limit)? % MAX_NUMBER + 1;
    let mut code = number.to_string();
    for _ in 0..WORDS_IN_CODE {
        code.push('-');
        code.push_str(WORDS[usize::from(bytes.next()?)]);
    }
    Some(code)
}

/// A code as typed, in its one spelling (`7-sunset-harbor-lemon`).
///
/// # Errors
/// [`CodeError`] for a code of the wrong shape or an unknown word.
pub fn normalise(text: &str) -> Result<String, CodeError> {
    let shape = || CodeError::Shape(text.to_string());
    let lower = text.trim().to_lowercase();
    let parts: Vec<&str> = lower
        .split(|c: char| c == '-' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .collect();
    let [number, words @ ..] = parts.as_slice() else {
        return Err(shape());
    };
    let number: u8 = number.parse().map_err(|_| shape())?;
    if !(1..=MAX_NUMBER).contains(&number) || words.len() != WORDS_IN_CODE {
        return Err(shape());
    }
    let mut code = number.to_string();
    for word in words {
        if WORDS.binary_search(word).is_err() {
            return Err(CodeError::Word((*word).to_string()));
        }
        code.push('-');
        code.push_str(word);
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_distinct() {
        assert!(WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(
            WORDS
                .iter()
                .all(|w| w.chars().all(|c| c.is_ascii_lowercase()))
        );
    }

    #[test]
    fn a_code_is_made_evenly_and_read_back() {
        // 250 is past the last multiple of 99 (198): skipped.
        let code = generate(&[250, 6, 0, 1, 255]).expect("enough bytes");
        assert_eq!(code, "7-acorn-actor-sunset");
        assert_eq!(
            normalise(" 7 Acorn-ACTOR  sunset ").as_deref(),
            Ok(code.as_str())
        );
        assert_eq!(generate(&[0, 1]), None);
        assert_eq!(
            generate(&[197, 0, 0, 0]).as_deref(),
            Some("99-acorn-acorn-acorn")
        );
    }

    #[test]
    fn malformed_codes_are_named() {
        for bad in [
            "",
            "7",
            "7-acorn-actor",
            "0-acorn-actor-sunset",
            "100-a-b-c",
            "x-acorn-actor-sunset",
        ] {
            assert!(matches!(normalise(bad), Err(CodeError::Shape(_))), "{bad}");
        }
        assert_eq!(
            normalise("7-acorn-actor-sunsett"),
            Err(CodeError::Word("sunsett".into()))
        );
    }

    #[test]
    fn the_entropy_is_what_the_list_gives() {
        let bits =
            f64::from(MAX_NUMBER).log2() + WORDS_IN_CODE as f64 * (WORDS.len() as f64).log2();
        assert!((bits - ENTROPY_BITS).abs() < 0.05, "{bits}");
    }
}

//! Which relative paths a receiver accepts, pure: the checks that keep a
//! hostile sender inside the receiving directory before any file is touched.

use super::wire::{MAX_NAME, MAX_PATH};

/// Why a path from the peer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// Empty, or only separators.
    #[error("an empty path")]
    Empty,
    /// Over [`MAX_PATH`] bytes.
    #[error("a path of {0} bytes is over the limit of {MAX_PATH}")]
    TooLong(usize),
    /// A component over [`MAX_NAME`] bytes.
    #[error("a name of {0} bytes is over the limit of {MAX_NAME}")]
    NameTooLong(usize),
    /// Starts at the root.
    #[error("{0:?} is absolute")]
    Absolute(String),
    /// Has a `..` (or `.`) component.
    #[error("{0:?} leaves the directory (it has a '.' or '..' component)")]
    Parent(String),
    /// Holds a NUL byte.
    #[error("{0:?} holds a NUL byte")]
    Nul(String),
    /// Holds a control character (newlines and the like), which no honest
    /// file name needs and which could drive a terminal that prints it.
    #[error("{0:?} holds a control character")]
    Control(String),
    /// Holds a bidirectional control (U+202A–U+202E, U+2066–U+2069), which
    /// makes a name read other than it is (`invoice\u{202E}fdp.exe`).
    #[error(
        "{0:?} holds a bidirectional control character, which makes a name read other than it is"
    )]
    Bidi(String),
    /// A name made only of characters that look like dots, one of them
    /// at least a look-alike (U+2024, U+FE52, U+FF0E), which reads as `.`
    /// or `..`.
    #[error("{0:?} has a name made of dot look-alikes, which reads as '.' or '..'")]
    Dots(String),
}

/// Bidirectional embedding, override and isolate controls.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters people read as a full stop.
fn is_dot_like(c: char) -> bool {
    matches!(c, '.' | '\u{2024}' | '\u{FE52}' | '\u{FF0E}')
}

/// Splits a relative, `/`-separated path into its components, refusing
/// anything that could name a place outside the receiving directory.
///
/// # Errors
/// A [`PathError`] naming what is wrong.
pub fn components(path: &str) -> Result<Vec<&str>, PathError> {
    if path.len() > MAX_PATH {
        return Err(PathError::TooLong(path.len()));
    }
    if path.contains('\0') {
        return Err(PathError::Nul(path.to_string()));
    }
    if path.chars().any(char::is_control) {
        return Err(PathError::Control(path.to_string()));
    }
    if path.chars().any(is_bidi) {
        return Err(PathError::Bidi(path.to_string()));
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute(path.to_string()));
    }
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if parts.is_empty() {
        return Err(PathError::Empty);
    }
    for part in &parts {
        if *part == ".." || *part == "." {
            return Err(PathError::Parent(path.to_string()));
        }
        if part.chars().all(is_dot_like) && part.chars().any(|c| c != '.') {
            return Err(PathError::Dots(path.to_string()));
        }
        if part.len() > MAX_NAME {
            return Err(PathError::NameTooLong(part.len()));
        }
    }
    Ok(parts)
}

/// Checks a symlink's target, for a link at `parts` (its components):
/// relative, and resolved by its names alone, inside the receiving
/// directory all the way (a `..` above it, even on the way back, is out).
///
/// # Errors
/// Why the target is refused.
pub fn check_link(parts: &[&str], target: &str) -> Result<(), String> {
    if target.is_empty() || target.len() > MAX_PATH {
        return Err(format!("a link to {target:?} (empty, or too long)"));
    }
    if target.contains('\0') || target.chars().any(char::is_control) {
        return Err(format!("a link to {target:?} (a NUL or control character)"));
    }
    if target.starts_with('/') {
        return Err(format!(
            "it points to {target:?}, an absolute path, outside the receiving directory"
        ));
    }
    // The link's own directory is this deep below the receiving one.
    let mut depth = parts.len().saturating_sub(1);
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if depth == 0 => {
                return Err(format!(
                    "it points to {target:?}, outside the receiving directory"
                ));
            }
            ".." => depth -= 1,
            _ => depth += 1,
        }
    }
    Ok(())
}

/// The name of the partial file kept beside `name` while it arrives.
pub fn partial_name(name: &str) -> String {
    format!(".{name}.sonde-part")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_mislead_a_reader_are_refused() {
        assert!(matches!(
            components("invoice\u{202E}fdp.exe"),
            Err(PathError::Bidi(_))
        ));
        assert!(matches!(components("a/\u{2067}b"), Err(PathError::Bidi(_))));
        assert!(matches!(
            components("\u{2024}\u{2024}/x"),
            Err(PathError::Dots(_))
        ));
        assert!(matches!(components("a/.\u{FF0E}"), Err(PathError::Dots(_))));
        assert!(matches!(components("\u{FE52}"), Err(PathError::Dots(_))));
        // Dots inside a name, and the look-alikes beside letters, are fine.
        assert!(components("...hidden").is_ok());
        assert!(
            components("...").is_ok(),
            "real dots alone are an ordinary name"
        );
        assert_eq!(
            components("v1.2/a\u{2024}b").expect("fine"),
            vec!["v1.2", "a\u{2024}b"]
        );
        assert_eq!(components(".config/x").expect("fine"), vec![".config", "x"]);
    }

    #[test]
    fn links_stay_inside() {
        assert_eq!(check_link(&["t", "a", "l"], "../b/c"), Ok(()));
        assert_eq!(check_link(&["t", "l"], "./x"), Ok(()));
        assert!(check_link(&["t", "l"], "../../x").is_err());
        assert!(check_link(&["l"], "../x").is_err());
        assert!(check_link(&["t", "l"], "/etc/passwd").is_err());
        // Out and back in is still out on the way.
        assert!(check_link(&["t", "l"], "../../t/x").is_err());
        assert!(check_link(&["t", "l"], "").is_err());
    }

    #[test]
    fn plain_relative_paths_pass() {
        assert_eq!(components("a/b/c.txt"), Ok(vec!["a", "b", "c.txt"]));
        assert_eq!(components("dir//x/"), Ok(vec!["dir", "x"]));
        assert_eq!(components("..."), Ok(vec!["..."]));
        assert_eq!(components("été"), Ok(vec!["été"]));
    }

    #[test]
    fn escapes_are_refused() {
        assert!(matches!(components("../x"), Err(PathError::Parent(_))));
        assert!(matches!(components("a/../../x"), Err(PathError::Parent(_))));
        assert!(matches!(components("a/./x"), Err(PathError::Parent(_))));
        assert!(matches!(
            components("/etc/passwd"),
            Err(PathError::Absolute(_))
        ));
        assert!(matches!(components("a\0b"), Err(PathError::Nul(_))));
        assert!(matches!(components("a\x1b[2J"), Err(PathError::Control(_))));
        assert_eq!(components(""), Err(PathError::Empty));
        assert_eq!(components("//"), Err(PathError::Absolute("//".into())));
    }

    #[test]
    fn long_names_are_refused() {
        let long = "x".repeat(300);
        assert_eq!(components(&long), Err(PathError::NameTooLong(300)));
        let deep = "a/".repeat(3000);
        assert_eq!(components(&deep), Err(PathError::TooLong(6000)));
    }
}

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
        if part.len() > MAX_NAME {
            return Err(PathError::NameTooLong(part.len()));
        }
    }
    Ok(parts)
}

/// The name of the partial file kept beside `name` while it arrives.
pub fn partial_name(name: &str) -> String {
    format!(".{name}.sonde-part")
}

#[cfg(test)]
mod tests {
    use super::*;

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

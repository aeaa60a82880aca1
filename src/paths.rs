//! Lexical path handling shared by the spec builders and the build context.
//!
//! Owns `..`/`.` normalisation without touching the file system; imports nothing from the crate.

use std::path::{Component, Path, PathBuf};

/// Lexically normalize an absolute path: `.` and empty parts dropped, `..` resolved (never above
/// `/`). `None` for a relative path. No file system access: symlinks are not resolved.
pub fn normalize(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_lexically_and_refuses_relative_paths() {
        assert_eq!(
            normalize(Path::new("/a/./b/../c//d/")),
            Some(PathBuf::from("/a/c/d"))
        );
        assert_eq!(normalize(Path::new("/../..")), Some(PathBuf::from("/")));
        assert_eq!(normalize(Path::new("a/b")), None);
    }
}

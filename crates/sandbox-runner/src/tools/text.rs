//! Output formatting shared by the tools: cutting long lines on a character boundary and
//! showing found paths the way the model named the search root.

use std::path::Path;

/// Splits `text` after `max` characters: the head, and how many characters were cut off.
pub(crate) fn cut_chars(text: &str, max: usize) -> (&str, usize) {
    match text.char_indices().nth(max) {
        Some((i, _)) => (&text[..i], text[i..].chars().count()),
        None => (text, 0),
    }
}

/// How a found file is shown: joined to the root as the model gave it, or bare (relative to the
/// working directory) when it gave none.
pub(crate) fn display_path(root_shown: Option<&str>, relative: &Path) -> String {
    match root_shown {
        Some(root) => Path::new(root)
            .join(relative)
            .to_string_lossy()
            .into_owned(),
        None => relative.to_string_lossy().into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_char_boundaries() {
        assert_eq!(cut_chars("héllo", 2), ("hé", 3));
        assert_eq!(cut_chars("汉字漢字", 3), ("汉字漢", 1));
        assert_eq!(cut_chars("abc", 3), ("abc", 0));
        assert_eq!(cut_chars("", 0), ("", 0));
    }

    #[test]
    fn joins_paths_as_given() {
        assert_eq!(
            display_path(Some("src/"), Path::new("a/b.rs")),
            "src/a/b.rs"
        );
        assert_eq!(display_path(Some("."), Path::new("b.rs")), "./b.rs");
        assert_eq!(display_path(None, Path::new("目录/b c.rs")), "目录/b c.rs");
    }
}

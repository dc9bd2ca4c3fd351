//! The host's apt mirror, so debootstrap uses the one this machine is configured for.

/// The first mirror in the host's apt sources that serves `suite`, so debootstrap uses the
/// mirror this machine is configured for; `None` lets debootstrap pick its default.
pub fn apt_mirror(suite: &str) -> Option<String> {
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
    }
    texts.iter().find_map(|t| mirror_in(t, suite))
}

/// Parses one sources file, one-line (`deb [opts] URI suite ...`) or deb822 (`URIs:` /
/// `Suites:` stanzas) format.
fn mirror_in(text: &str, suite: &str) -> Option<String> {
    let usable = |uri: &str| uri.starts_with("http://") || uri.starts_with("https://");
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let mut rest: Vec<&str> = words.collect();
        if rest.first().is_some_and(|w| w.starts_with('[')) {
            let close = rest.iter().position(|w| w.ends_with(']'))?;
            rest.drain(..=close);
        }
        if let [uri, s, ..] = rest.as_slice()
            && *s == suite
            && usable(uri)
        {
            return Some(uri.to_string());
        }
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(str::trim)
            })
        };
        let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else {
            continue;
        };
        if stanza
            .lines()
            .any(|l| l.trim_start().starts_with('#') && l.contains("URIs"))
        {
            continue;
        }
        if suites.split_whitespace().any(|s| s == suite)
            && let Some(uri) = uris.split_whitespace().find(|u| usable(u))
        {
            return Some(uri.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_from_one_line_sources() {
        let text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            mirror_in(text, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(mirror_in(text, "trixie"), None);
    }

    #[test]
    fn mirror_from_deb822_sources() {
        let text = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in(text, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_in(text, "bookworm-security").as_deref(),
            Some("http://mirror.example/debian-security")
        );
    }
}

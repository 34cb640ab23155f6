//! What the server's fuzz targets in `fuzz/` run (feature `fuzzing`; not
//! an API), as `cfgd::fuzzing` does for the library's: each takes
//! arbitrary bytes and checks an invariant of what it parses.

/// A target: arbitrary bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/` has them.
pub const TARGETS: &[(&str, Target)] = &[
    ("settings", settings),
    ("last_event_id", last_event_id),
    ("selector", selector),
    ("http_head", http_head),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// The settings file: parsing and checking it never panic.
pub fn settings(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(settings) = toml::from_str::<crate::Settings>(text) {
        // Paths stay unread: a fuzzed path may name a device that never ends.
        if settings.secret_key_file.is_none() && settings.snapshot.is_none() {
            let _ = settings.validate();
        }
    }
}

/// `Last-Event-ID`: what parses is digits, and prints back the same, but
/// for white space around and leading zeros.
pub fn last_event_id(data: &[u8]) {
    if let Some(revision) = crate::sse::last_event_id(data) {
        assert!(revision >= 0);
        let text = std::str::from_utf8(data).unwrap().trim();
        assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
        let digits = text.trim_start_matches('0');
        assert_eq!(revision.to_string().trim_start_matches('0'), digits);
    }
}

/// A flagd selector: what it accepts is a valid namespace that the
/// selector names.
pub fn selector(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok((namespace, _labels)) = crate::grpc::parse_selector(text) {
        assert!(cfgd::validate_namespace(&namespace).is_ok());
        assert!(text.contains(namespace.as_str()));
    }
}

/// A connection's first request head (`src/server/conn.rs`): one taken as
/// an event stream's, to be answered without hyper, is a bodyless GET of a
/// stream route; anything else is left to hyper.
pub fn http_head(data: &[u8]) {
    crate::conn::check_first_head(data);
}

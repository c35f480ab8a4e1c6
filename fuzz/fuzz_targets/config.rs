//! Config files: TOML fragments -> merged inputs -> validated `Settings`
//! (`Settings::from_fragments`, what `Settings::load` runs on the files it read).
//!
//! Input: up to four fragments (vendor drop-ins, main file, local drop-ins),
//! split at NUL bytes; a fragment that is not UTF-8 is one `load` could not
//! read, so the input is skipped. No panic on any text; an error names a
//! line inside the file it names; a valid config stays the same when an
//! empty drop-in is merged after it.
#![no_main]

use std::path::PathBuf;

use baton::fuzzing::{ConfigError, Settings};
use baton_fuzz::FRAGMENT_SEPARATOR;
use libfuzzer_sys::fuzz_target;

const MAX_FRAGMENTS: usize = 4;

fuzz_target!(|data: &[u8]| {
    let mut fragments = Vec::new();
    for (i, bytes) in data.split(|b| *b == FRAGMENT_SEPARATOR).enumerate() {
        if i == MAX_FRAGMENTS {
            return;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return;
        };
        fragments.push((
            PathBuf::from(format!("/etc/baton/{i}.toml")),
            text.to_owned(),
        ));
    }
    match Settings::from_fragments(&fragments) {
        Ok(settings) => {
            let mut more = fragments.clone();
            more.push((
                PathBuf::from("/etc/baton/baton.d/zz-empty.toml"),
                String::new(),
            ));
            let mut again = Settings::from_fragments(&more)
                .unwrap_or_else(|e| panic!("an empty drop-in broke a valid config: {e}"));
            assert_eq!(again.sources.pop(), more.last().map(|(f, _)| f.clone()));
            assert_eq!(again, settings, "an empty drop-in changed the settings");
        }
        Err(error) => {
            let message = error.to_string();
            assert!(!message.is_empty());
            if let ConfigError::Invalid { file, line, .. }
            | ConfigError::Syntax { file, line, .. } = &error
            {
                if let Some((_, text)) = fragments.iter().find(|(f, _)| f == file) {
                    let lines = text.matches('\n').count() + 1;
                    assert!(
                        (1..=lines).contains(line),
                        "{message}: line {line} of a file of {lines} lines"
                    );
                }
            }
        }
    }
});

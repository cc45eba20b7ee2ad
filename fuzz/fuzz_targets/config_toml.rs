//! The configuration file and its environment overrides: `ProvidersConfig::from_toml` (what
//! the C ABI and the core read) and the server's `Config::from_toml` (`[server]` plus the
//! provider accounts).
//!
//! Input (UTF-8): the TOML text, optionally followed by a line `%%` and then environment
//! variables, one `NAME=VALUE` a line (e.g. `INTENTKIT_SERVER_AUTH_TOKENS=a,b`). Every
//! `SECRET` in the text and in the variables' values is replaced by [`MARKER`] first.
//!
//! Invariants: nothing panics, and no error message repeats a value, from the file or from the
//! environment: the marker may appear in an error only if it was also written as a key (a
//! table or field name, which errors do name).
#![no_main]

use intentkit_core::provider::config::ProvidersConfig;
use intentkit_grpc_server::config::Config;
use libfuzzer_sys::fuzz_target;
use toml_parser::parser::{Event, EventKind, parse_document};

/// Stands for a secret: an error message that contains it has echoed a value.
const MARKER: &str = "tok_fuzz_marker_7f3a";
/// Separates the TOML text from the environment.
const ENV_SEPARATOR: &str = "\n%%\n";

/// Whether `MARKER` occurs in a key of `text`: table and field names (and so account names)
/// may be named by an error, values may not. Keys are found with TOML's own lexer and push
/// parser, which also reads a document that does not parse (a key whose value is missing is
/// still a key; an unquoted value is still a value).
fn marker_in_a_key(text: &str) -> bool {
    let tokens = toml_parser::Source::new(text).lex().into_vec();
    let mut keys = Vec::new();
    let mut receiver = |event: Event| {
        if event.kind() == EventKind::SimpleKey {
            keys.push(event.span());
        }
    };
    parse_document(&tokens, &mut receiver, &mut ());
    text.match_indices(MARKER).any(|(at, m)| {
        keys.iter()
            .any(|k| k.start() < at + m.len() && at < k.end())
    })
}

fn assert_no_echo(what: &str, message: &str, text: &str, env: &[(String, String)]) {
    if message.contains(MARKER) && !marker_in_a_key(text) {
        panic!(
            "{what} error repeats a value: {message:?}\n--- config ---\n{text}\n--- env ---\n{env:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (toml_part, env_part) = input.split_once(ENV_SEPARATOR).unwrap_or((input, ""));
    let text = toml_part.replace("SECRET", MARKER);
    let env: Vec<(String, String)> = env_part
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("SECRET", MARKER)))
        .collect();
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());

    if let Err(e) = ProvidersConfig::from_toml(&text, |_| None) {
        assert_no_echo("provider config", &e.to_string(), &text, &env);
        let _ = e.code();
    }
    if let Err(e) = Config::from_toml(&text, lookup) {
        assert_no_echo("server config", &e.to_string(), &text, &env);
        let _ = e.code();
    }
});

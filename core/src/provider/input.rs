//! Bounds on what providers send: every id and text field from outside is checked before it is
//! used, stored, logged or put in a URL, and a parse error is reported without the input's
//! values.

use super::WebhookError;

/// Bounds on what providers send (ours): every id and text field from outside is checked
/// before it is used, stored or put in a URL.
pub mod bounds {
    /// Longest provider id (intent, event, transaction, reference number).
    pub const ID_MAX: usize = 64;
    /// Longest free text (names, reasons, bank references).
    pub const TEXT_MAX: usize = 512;
}

/// Checks a provider id: 1 to [`bounds::ID_MAX`] of `A-Z a-z 0-9 - _ .`, at least one of them
/// a letter or digit: the characters every provider id we know uses. Anything else is refused
/// before it reaches a query or a URL.
pub fn check_id(field: &'static str, value: &str) -> Result<(), WebhookError> {
    let ok = value.chars().any(|c| c.is_ascii_alphanumeric())
        && value.len() <= bounds::ID_MAX
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(WebhookError::MalformedBody(format!(
            "{field} is not a provider id (1 to {} of A-Z a-z 0-9 - _ .)",
            bounds::ID_MAX
        )))
    }
}

/// Checks free text from a provider: at most [`bounds::TEXT_MAX`] characters, no control
/// characters.
pub fn check_text(field: &'static str, value: &str) -> Result<(), WebhookError> {
    if value.chars().count() > bounds::TEXT_MAX || value.chars().any(char::is_control) {
        return Err(WebhookError::MalformedBody(format!(
            "{field} is longer than {} characters or holds control characters",
            bounds::TEXT_MAX
        )));
    }
    Ok(())
}

/// A JSON parse error, said without the input's values (see [`redact_values`]): a body may
/// hold anything. Field names (in backticks) and the position are kept.
pub fn json_error(e: &serde_json::Error) -> String {
    redact_values(&e.to_string())
}

/// A parser's message without the values it quotes. serde, serde_json and toml write
/// `invalid type: string "x", expected ...`, `invalid value: integer `5`, expected ...` and
/// `unknown variant `x`, expected ...`: the value goes, the kind and the expectation stay.
/// Anything else in double quotes goes too.
pub fn redact_values(message: &str) -> String {
    let mut out = message.to_string();
    for (prefix, keep_kind) in [
        ("invalid type: ", true),
        ("invalid value: ", true),
        ("unknown variant ", false),
    ] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let expected = rest.find(", expected").map_or("", |i| &rest[i..]);
            let kind = rest.split([' ', ',']).next().unwrap_or("");
            out = if keep_kind && !kind.is_empty() {
                format!("{prefix}{kind}{expected}")
            } else {
                format!("{}{expected}", prefix.trim_end())
            };
            break;
        }
    }
    let mut redacted = String::with_capacity(out.len());
    let mut quoted = false;
    for c in out.chars() {
        match (c, quoted) {
            ('"', false) => {
                quoted = true;
                redacted.push_str("\"…\"");
            }
            ('"', true) => quoted = false,
            (_, true) => {}
            (c, false) => redacted.push(c),
        }
    }
    redacted
}

//! Secrets that never print: API keys, client and module secrets, webhook signing secrets.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A credential. `Debug` prints `Secret(***)`; there is no `Display` and no `Serialize`, so a
/// secret cannot reach a log line, an error message or a JSON body by accident. Read it with
/// [`Secret::expose`] only where it is sent or used as a key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the header or key that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty (an unset credential).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("sk_live_very_secret");
        let printed = format!("{s:?} {:?} {:#?}", Some(&s), vec![s.clone()]);
        assert!(!printed.contains("very_secret"), "{printed}");
        assert_eq!(s.expose(), "sk_live_very_secret");
    }
}

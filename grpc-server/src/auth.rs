//! Bearer-token authentication for the gRPC service. Tokens are compared by their SHA-256
//! digests, so the comparison's timing says nothing about a configured token. A call that
//! passes carries its [`Caller`] (which configured token, never the token itself) in its
//! extensions, for limits per token.

use intentkit_core::provider::Secret;
use intentkit_proto::{ApiError, Code};
use sha2::{Digest, Sha256};
use tonic::{Request, Status};

use crate::service::status_of;

/// The token check. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    digests: std::sync::Arc<Vec<[u8; 32]>>,
    open: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.digests.len())
            .field("open", &self.open)
            .finish()
    }
}

/// Who made a call, as far as limits are concerned: the position of its token among the
/// configured ones (the first, for a token listed twice), or `Anonymous` on a server without
/// tokens. Never the token's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    /// The configured token at this position.
    Token(usize),
    /// No token: `allow_unauthenticated` with none configured.
    Anonymous,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Auth {
    /// Accepts any of `tokens`; with `open`, and no tokens, accepts every call.
    pub fn new(tokens: &[Secret], open: bool) -> Self {
        Auth {
            digests: std::sync::Arc::new(
                tokens
                    .iter()
                    .map(|t| digest(t.expose().as_bytes()))
                    .collect(),
            ),
            open,
        }
    }

    /// The interceptor: passes the request on with its [`Caller`], or refuses it with
    /// `UNAUTHENTICATED`.
    #[allow(clippy::result_large_err)]
    pub fn check(&self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if self.open && self.digests.is_empty() {
            request.extensions_mut().insert(Caller::Anonymous);
            return Ok(request);
        }
        let refuse = |reason: &str, message: &str| {
            Err(status_of(&ApiError::new(
                Code::Unauthenticated,
                reason,
                message,
            )))
        };
        let Some(value) = request.metadata().get("authorization") else {
            return refuse(
                "AUTH_MISSING",
                "missing authorization metadata; send `authorization: Bearer <token>`",
            );
        };
        let Some(token) = value.to_str().ok().and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        }) else {
            return refuse(
                "AUTH_MALFORMED",
                "authorization metadata must be `Bearer <token>`",
            );
        };
        let d = digest(token.trim().as_bytes());
        if let Some(i) = self.digests.iter().position(|t| *t == d) {
            request.extensions_mut().insert(Caller::Token(i));
            Ok(request)
        } else {
            refuse(
                "AUTH_INVALID",
                "the bearer token is not one this server accepts",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(v) = value {
            r.metadata_mut().insert("authorization", v.parse().unwrap());
        }
        r
    }

    #[test]
    fn tokens_are_checked() {
        let a = Auth::new(&[Secret::new("t1"), Secret::new("t2")], false);
        let passed = a.check(with(Some("Bearer t2"))).unwrap();
        assert_eq!(passed.extensions().get::<Caller>(), Some(&Caller::Token(1)));
        for (v, reason) in [
            (None, "AUTH_MISSING"),
            (Some("Basic abc"), "AUTH_MALFORMED"),
            (Some("Bearer nope"), "AUTH_INVALID"),
        ] {
            let s = a.check(with(v)).unwrap_err();
            assert_eq!(s.code(), tonic::Code::Unauthenticated);
            use tonic_types::StatusExt;
            assert_eq!(s.get_error_details().error_info().unwrap().reason, reason);
        }
        let open = Auth::new(&[], true).check(with(None)).unwrap();
        assert_eq!(open.extensions().get::<Caller>(), Some(&Caller::Anonymous));
        let doc = include_str!("../../docs/errors.md");
        for reason in [
            "AUTH_MISSING",
            "AUTH_MALFORMED",
            "AUTH_INVALID",
            "SHUTTING_DOWN",
            crate::streams::TOO_MANY_STREAMS,
        ] {
            assert!(
                doc.contains(&format!("| `{reason}` |")),
                "{reason} is not documented"
            );
        }
        assert!(!format!("{a:?}").contains("t1"));
    }
}

//! intentkit's domain: the intent lifecycle, its store, and the durable event outbox.
//!
//! Every façade (gRPC, the C ABI) is a thin layer over this crate. It owns the rules; the
//! façades translate. The pieces:
//!
//! Read it bottom up; each module imports only those above it in this list:
//!
//! - [`types`]: the domain values ([`MinorUnits`], [`Currency`], [`IntentId`]); imports
//!   nothing from the crate.
//! - [`status`]: the names of the lifecycle ([`IntentStatus`], [`SignalKind`], [`Cause`],
//!   [`Proof`]).
//! - [`error`]: [`CoreError`] and [`StoreError`], with their stable codes.
//! - [`intent`]: the [`Intent`] itself and the caller's requests.
//! - [`lifecycle`]: signals and the one transition table ([`lifecycle::rule`]), documented
//!   there as a table.
//! - [`outbox`]: the events a host consumes, each with a business idempotency key.
//! - [`store`]: the [`Store`] trait and its embedded SQLite implementation.
//! - [`Ledger`]: creates intents idempotently and applies events under optimistic
//!   concurrency, writing the transition, its history row and its outbox event together.
//! - [`provider`]: the [`provider::Adapter`] trait and one adapter per provider (Pientegra,
//!   Decentro): wire formats, webhook verification, status look-ups, sweeps, account config.
//! - [`Engine`]: the async API the façades wrap: create at the provider, handle webhooks and
//!   callbacks, expire, recover, cancel, refresh, and the outbox feed.
//!
//! Data flows one way: façade → engine → (adapter, ledger → store) → outbox → façade. The
//! store never decides a status; the lifecycle never does I/O; an adapter never touches the
//! store. `docs/trust.md` says what each provider's signal proves.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod clock;
pub mod engine;
pub mod error;
pub mod intent;
pub mod ledger;
pub mod lifecycle;
pub mod outbox;
pub mod provider;
pub mod status;
pub mod store;
pub mod types;

pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{
    Engine, EngineError, EngineSettings, EventFeed, Job, JobReport, MaintenanceReport,
    PROVIDER_WINDOW_PASSED, ReconcileReport, WebhookAnswer, WebhookOutcome,
};
pub use error::{CoreError, StoreError};
pub use intent::{
    AccountVerificationRequest, DepositRequest, Intent, IntentRequest, Metadata, PayerHandoff,
    ProviderRef, VerifiedPayer,
};
pub use ledger::{ApplyOutcome, Created, Ledger};
pub use lifecycle::{Cause, IntentEvent, IntentStatus, Signal, SignalKind};
pub use outbox::{EventType, OutboxEvent};
pub use status::Proof;
pub use store::Store;
pub use store::sqlite::{SqliteConfig, SqliteStore};
pub use types::{
    AccountName, ConsumerName, Currency, IdempotencyKey, IntentId, IntentKind, InvalidValue,
    MinorUnits, PartnerReference, Provider, Timestamp, UserId,
};

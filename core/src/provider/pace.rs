//! Spacing of one account's sweep calls, so a reconciliation pass stays inside the provider's
//! rate limit however much it has to read.

use std::time::Duration;

/// Spaces calls at least `interval` apart. Shared by every task that calls one account.
#[derive(Debug)]
pub struct Pacer {
    next: tokio::sync::Mutex<tokio::time::Instant>,
    interval: Duration,
}

impl Pacer {
    /// A pacer whose first call goes at once.
    pub fn new(interval: Duration) -> Self {
        Pacer {
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            interval,
        }
    }

    /// Waits for this call's turn.
    pub async fn wait(&self) {
        let mut next = self.next.lock().await;
        tokio::time::sleep_until(*next).await;
        *next = tokio::time::Instant::now() + self.interval;
    }
}

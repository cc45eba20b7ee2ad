//! Open event streams per caller, capped (`max_streams_per_token`). A stream holds its
//! [`StreamSlot`] for as long as its task runs, and gives it back when dropped, however the
//! stream ends (the client went away, an error, shutdown). Past the cap, `StreamEvents` answers
//! `RESOURCE_EXHAUSTED` with [`TOO_MANY_STREAMS`]: one token cannot hold the server's memory
//! and tasks with thousands of streams over many connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use intentkit_proto::{ApiError, Code};
use tonic::Status;

use crate::auth::Caller;
use crate::service::status_of;

/// The reason a stream past the cap is refused with.
pub const TOO_MANY_STREAMS: &str = "TOO_MANY_STREAMS";

/// Open streams by caller. Cheap to clone; clones share the counts.
#[derive(Clone, Debug)]
pub(crate) struct StreamSlots {
    cap: usize,
    open: Arc<Mutex<HashMap<Caller, usize>>>,
}

/// One open stream's place; given back when dropped.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    open: Arc<Mutex<HashMap<Caller, usize>>>,
    caller: Caller,
}

impl StreamSlots {
    /// At most `cap` open streams per caller.
    pub(crate) fn new(cap: usize) -> Self {
        StreamSlots {
            cap,
            open: Arc::default(),
        }
    }

    /// A slot for one more stream of `caller`, or the status that refuses it.
    #[allow(clippy::result_large_err)]
    pub(crate) fn take(&self, caller: Caller) -> Result<StreamSlot, Status> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| Status::internal("stream slots poisoned"))?;
        let n = open.entry(caller).or_default();
        if *n >= self.cap {
            return Err(status_of(&ApiError::new(
                Code::ResourceExhausted,
                TOO_MANY_STREAMS,
                format!(
                    "this token already has {} event streams open (max_streams_per_token); \
                     close one, or read several consumers' events over fewer streams",
                    self.cap
                ),
            )));
        }
        *n += 1;
        Ok(StreamSlot {
            open: self.open.clone(),
            caller,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock()
            && let Some(n) = open.get_mut(&self.caller)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_has_its_own_cap_and_a_dropped_slot_frees_one() {
        let slots = StreamSlots::new(2);
        let a1 = slots.take(Caller::Token(0)).unwrap();
        let _a2 = slots.take(Caller::Token(0)).unwrap();
        let refused = slots.take(Caller::Token(0)).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(slots.take(Caller::Token(1)).is_ok());
        drop(a1);
        assert!(slots.take(Caller::Token(0)).is_ok());
    }
}

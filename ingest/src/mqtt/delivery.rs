//! What the MQTT source hands downstream: the messages of one read from the broker's socket,
//! with one confirmation for all of them.

use crate::IngestEvent;
use riskwatch_core::Timestamp;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

/// One MQTT message, decoded.
#[derive(Debug)]
pub struct Message {
    /// The MQTT topic it arrived on.
    pub topic: String,
    /// Arrival time.
    pub received_at: Timestamp,
    /// Readings, dead letters or a command, in payload order.
    pub events: Vec<IngestEvent>,
}

/// The messages one read from the broker's socket brought, in arrival order, with the means to
/// confirm them. They are acknowledged to the broker (one write of their PUBACKs, after those of
/// every earlier delivery) once [`Delivery::confirm`] is called; dropping the delivery
/// unconfirmed leaves them unacknowledged, and the source reconnects so that the broker
/// re-delivers them.
#[derive(Debug)]
pub struct Delivery {
    /// The messages, in arrival order.
    pub messages: Vec<Message>,
    confirm: Confirmation,
}

impl Delivery {
    /// A delivery of `messages`; `confirm` fires once it is confirmed. `permit` (a share of a
    /// limit on messages in flight) is given back when the delivery is confirmed or dropped.
    pub(crate) fn new(
        messages: Vec<Message>,
        confirm: oneshot::Sender<()>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Delivery { messages, confirm: Confirmation { confirm, _permit: permit } }
    }

    /// The messages are safe downstream: acknowledge them to the broker.
    pub fn confirm(self) {
        self.confirm.confirm();
    }

    /// Takes the messages out, keeping the confirmation.
    pub fn split(self) -> (Vec<Message>, Confirmation) {
        (self.messages, self.confirm)
    }
}

/// The confirmation half of a [`Delivery`].
#[derive(Debug)]
pub struct Confirmation {
    confirm: oneshot::Sender<()>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Confirmation {
    /// Acknowledge the delivery's messages to the broker.
    pub fn confirm(self) {
        let _ = self.confirm.send(());
    }
}

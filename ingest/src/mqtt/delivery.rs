//! What the MQTT source hands downstream: the messages of one read from the broker's socket,
//! with one confirmation for all of them.

use crate::IngestEvent;
use riskwatch_core::Timestamp;
use tokio::sync::oneshot;

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
    confirm: oneshot::Sender<()>,
}

impl Delivery {
    /// A delivery of `messages`; `confirm` fires once it is confirmed.
    pub(crate) fn new(messages: Vec<Message>, confirm: oneshot::Sender<()>) -> Self {
        Delivery { messages, confirm }
    }

    /// The messages are safe downstream: acknowledge them to the broker.
    pub fn confirm(self) {
        let _ = self.confirm.send(());
    }

    /// Takes the messages out, keeping the confirmation.
    pub fn split(self) -> (Vec<Message>, Confirmation) {
        (self.messages, Confirmation(self.confirm))
    }
}

/// The confirmation half of a [`Delivery`].
#[derive(Debug)]
pub struct Confirmation(oneshot::Sender<()>);

impl Confirmation {
    /// Acknowledge the delivery's messages to the broker.
    pub fn confirm(self) {
        let _ = self.0.send(());
    }
}

//! Messages handed downstream and not yet acknowledged: the ordered queue behind "PUBACK only
//! after the next stage confirmed, in arrival order, many in one write". Used by the MQTT
//! source (acknowledging to a broker) and the gateway front (acknowledging to a gateway).

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{PubAck, PubRec, Publish};
use rumqttc::mqttbytes::QoS;
use std::collections::VecDeque;
use tokio::sync::oneshot;

/// A delivery was dropped downstream without being confirmed.
#[derive(Debug)]
pub(crate) struct Unconfirmed;

/// The messages of one delivery to acknowledge (packet id and QoS), and its confirmation.
type Pending = (Vec<(u16, QoS)>, oneshot::Receiver<()>);

/// Deliveries handed downstream, oldest first.
#[derive(Default)]
pub(crate) struct Unacked {
    /// Per delivery, in arrival order: the messages' packet ids and QoS, and its confirmation.
    queue: VecDeque<Pending>,
    /// Messages in `queue` (QoS 0 ones count too: they hold memory downstream).
    messages: usize,
}

impl Unacked {
    /// Records a delivery of `batch` about to go downstream; returns its confirmation's sender.
    pub fn push(&mut self, batch: &[Publish]) -> oneshot::Sender<()> {
        let (confirm, confirmed) = oneshot::channel();
        let pkids: Vec<(u16, QoS)> = batch.iter().map(|p| (p.pkid, p.qos)).collect();
        self.messages += pkids.len();
        self.queue.push_back((pkids, confirmed));
        confirm
    }

    /// Messages handed downstream and not yet acknowledged.
    pub fn messages(&self) -> usize {
        self.messages
    }

    /// Whether nothing is waiting for confirmation.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Waits for the oldest delivery's confirmation (forever when there is none).
    pub async fn front_confirmed(&mut self) -> Result<(), Unconfirmed> {
        match self.queue.front_mut() {
            Some((_, rx)) => rx.await.map_err(|_| Unconfirmed),
            None => std::future::pending().await,
        }
    }

    /// Encodes the PUBACKs (PUBRECs for QoS 2) of the oldest delivery (confirmed) and of every
    /// later one already confirmed, in order. `Ok(false)` when it stopped at a delivery dropped unconfirmed: the
    /// PUBACKs encoded so far must still go out (their messages are safe), and then the
    /// connection must end.
    pub fn take_confirmed(&mut self, out: &mut BytesMut) -> Result<bool, rumqttc::mqttbytes::Error> {
        let mut first = true;
        while let Some((_, rx)) = self.queue.front_mut() {
            if !first {
                match rx.try_recv() {
                    Ok(()) => {}
                    Err(oneshot::error::TryRecvError::Empty) => break,
                    Err(oneshot::error::TryRecvError::Closed) => return Ok(false),
                }
            }
            first = false;
            let (pkids, _) = self.queue.pop_front().expect("front exists");
            self.messages = self.messages.saturating_sub(pkids.len());
            for (pkid, qos) in pkids {
                match qos {
                    QoS::AtMostOnce => 0,
                    QoS::AtLeastOnce => PubAck::new(pkid).write(out)?,
                    QoS::ExactlyOnce => PubRec::new(pkid).write(out)?,
                };
            }
        }
        Ok(true)
    }
}

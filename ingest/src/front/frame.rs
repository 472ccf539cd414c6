//! Just enough of MQTT 3.1.1 framing for the gateway front: where a packet ends, what type it
//! is, a PUBLISH's topic and QoS, and a CONNECT's keep-alive. Packets the front passes on are
//! copied byte for byte, never decoded and re-encoded.

use rumqttc::mqttbytes::{check, Error, PacketType};

/// A complete packet at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Frame {
    /// Its type.
    pub kind: PacketType,
    /// Its length in bytes, fixed header included.
    pub len: usize,
}

/// The first complete packet in `buf`: `Ok(None)` while more bytes are needed; an error for a
/// malformed fixed header, an unknown packet type or one larger than `max_packet` bytes.
pub(super) fn next(buf: &[u8], max_packet: usize) -> Result<Option<Frame>, Error> {
    match check(buf.iter(), max_packet) {
        Ok(header) => Ok(Some(Frame { kind: header.packet_type()?, len: header.frame_length() })),
        Err(Error::InsufficientBytes(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Bytes of the fixed header of the (complete) packet `pkt`.
fn header_len(pkt: &[u8]) -> usize {
    1 + pkt[1..].iter().take(4).position(|b| b & 0x80 == 0).map_or(4, |i| i + 1)
}

/// A PUBLISH packet's QoS (0, 1 or 2; 3 is malformed).
pub(super) fn publish_qos(pkt: &[u8]) -> u8 {
    (pkt[0] >> 1) & 0b11
}

/// A PUBLISH packet's topic, if it is well-formed UTF-8.
pub(super) fn publish_topic(pkt: &[u8]) -> Option<&str> {
    let at = header_len(pkt);
    let len = usize::from(u16::from_be_bytes([*pkt.get(at)?, *pkt.get(at + 1)?]));
    std::str::from_utf8(pkt.get(at + 2..at + 2 + len)?).ok()
}

/// For a CONNECT of MQTT 3.1.1: its keep-alive in seconds, replaced in `pkt` by the longest
/// one MQTT allows (the front watches the gateway's keep-alive itself, because the messages it
/// takes never reach the broker behind it, and pings that broker on the gateway's behalf).
/// `None`, and `pkt` unchanged, for anything else.
pub(super) fn take_keep_alive(pkt: &mut [u8]) -> Option<u16> {
    let at = header_len(pkt);
    let vh = pkt.get_mut(at..at + 10)?;
    if vh[..7] != [0, 4, b'M', b'Q', b'T', b'T', 4] {
        return None;
    }
    let keep_alive = u16::from_be_bytes([vh[8], vh[9]]);
    vh[8..10].copy_from_slice(&u16::MAX.to_be_bytes());
    Some(keep_alive)
}

/// The return code of a CONNACK (0: accepted).
pub(super) fn connack_code(pkt: &[u8]) -> Option<u8> {
    pkt.get(header_len(pkt) + 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use rumqttc::mqttbytes::v4::{Connect, Publish};
    use rumqttc::mqttbytes::QoS;

    fn publish(topic: &str, payload: &[u8], qos: QoS) -> BytesMut {
        let mut p = Publish::new(topic, qos, payload.to_vec());
        p.pkid = if qos == QoS::AtMostOnce { 0 } else { 7 };
        let mut buf = BytesMut::new();
        p.write(&mut buf).unwrap();
        buf
    }

    #[test]
    fn frames_are_found_whole_and_only_whole() {
        let mut buf = publish("riskwatch/v1/readings/s/x", b"{}", QoS::AtLeastOnce);
        let one = buf.len();
        // A payload over 127 bytes needs a two-byte length.
        buf.extend_from_slice(&publish("a/b", &[b'x'; 300], QoS::AtMostOnce));
        let f = next(&buf, 1 << 20).unwrap().unwrap();
        assert_eq!(f, Frame { kind: PacketType::Publish, len: one });
        let second = &buf[one..];
        assert_eq!(next(second, 1 << 20).unwrap().unwrap().len, second.len());
        assert_eq!(publish_topic(second), Some("a/b"));
        assert_eq!(publish_qos(second), 0);
        for cut in 0..second.len() {
            assert_eq!(next(&second[..cut], 1 << 20).unwrap(), None, "{cut} bytes are not a packet");
        }
        assert!(next(second, 100).is_err(), "larger than the limit");
        assert!(next(&[0xF0, 0], 100).is_err(), "type 15 does not exist in MQTT 3.1.1");
    }

    #[test]
    fn a_publish_shows_its_topic_and_qos() {
        let p = publish("riskwatch/v1/readings/site-1/gauge-2", b"{\"v\":1}", QoS::AtLeastOnce);
        assert_eq!(publish_topic(&p), Some("riskwatch/v1/readings/site-1/gauge-2"));
        assert_eq!(publish_qos(&p), 1);
        let mut bad = p.clone();
        bad[4] = 0xFF; // inside the topic: not UTF-8
        assert_eq!(publish_topic(&bad), None);
        assert_eq!(publish_topic(&p[..5]), None, "cut short");
    }

    #[test]
    fn a_connect_gives_up_its_keep_alive_and_stays_readable() {
        let mut c = Connect::new("gw-1");
        c.keep_alive = 45;
        c.set_login("user", "secret");
        let mut buf = BytesMut::new();
        c.write(&mut buf).unwrap();
        assert_eq!(take_keep_alive(&mut buf), Some(45));
        match rumqttc::mqttbytes::v4::Packet::read(&mut buf, 1 << 20).unwrap() {
            rumqttc::mqttbytes::v4::Packet::Connect(back) => {
                assert_eq!(back.keep_alive, u16::MAX);
                assert_eq!(back.client_id, "gw-1");
                assert_eq!(back.login.unwrap().password, "secret");
            }
            other => panic!("{other:?}"),
        }
        let mut v5ish = vec![0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 5, 0, 0, 30];
        assert_eq!(take_keep_alive(&mut v5ish), None);
        assert_eq!(v5ish[11], 30, "left alone");
    }
}

//! SL 651-2014 frames in HEX/BCD mode, sans I/O: bytes from a TCP stream in, frames or
//! rejected bytes out ([`FrameDecoder`]), and frames to bytes ([`encode`]).
//!
//! Layout (docs/wire-format.md, "SL 651-2014", with a frame worked byte by byte):
//!
//! ```text
//! 7E 7E | addresses (6) | password (2) | function (1) | flag+length (2) | STX | body | end | CRC (2)
//! ```
//!
//! The addresses are the centre (1 byte) then the remote station (5 bytes) in an up frame
//! (station → centre), the station then the centre in a down frame. The flag is the high
//! nibble of the first length byte (0 up, 8 down); the low 12 bits count the body bytes
//! between the start marker (STX 02, or SYN 16 for one packet of several) and the end marker
//! (ETX 03, ETB 17, or in down frames ENQ 05, EOT 04, ACK 06, NAK 15, ESC 1B). The CRC
//! ([`super::crc`]) covers everything from the first 7E through the end marker.
//!
//! The decoder never panics and never buffers more than one frame's worth (at most 4 112
//! bytes) of input: bytes before a 7E 7E are rejected as garbage, a frame with a bad header,
//! end marker or CRC is rejected with the reason, and decoding goes on at the next 7E 7E.

use super::crc::crc16;

/// The two bytes every frame starts with.
pub const START: [u8; 2] = [0x7E, 0x7E];
/// Start of the body, single-packet message.
pub const STX: u8 = 0x02;
/// Start of the body, one packet of a multi-packet message.
pub const SYN: u8 = 0x16;
/// End of the body: the message is complete.
pub const ETX: u8 = 0x03;
/// End of the body: more packets follow.
pub const ETB: u8 = 0x17;
/// End of a down frame: the station may hang up.
pub const EOT: u8 = 0x04;
/// End of a down frame: the station stays online.
pub const ESC: u8 = 0x1B;
/// Further end markers of down frames: enquiry, acknowledgement, negative acknowledgement.
pub const ENQ: u8 = 0x05;
/// See [`ENQ`].
pub const ACK: u8 = 0x06;
/// See [`ENQ`].
pub const NAK: u8 = 0x15;
/// Bytes from the first 7E through the start marker.
pub const HEADER_LEN: usize = 14;
/// End marker and CRC.
pub const TRAILER_LEN: usize = 3;
/// The largest body the 12-bit length allows.
pub const MAX_BODY: usize = 0x0FFF;
/// Garbage kept before it is rejected while no 7E 7E is in sight.
const MAX_GARBAGE: usize = 4096;

/// One frame, checked (start, flag, markers and CRC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Centre (中心站) address.
    pub centre: u8,
    /// Remote station (遥测站) address, as sent.
    pub station: [u8; 5],
    /// Password (密码), as sent.
    pub password: u16,
    /// Function code (功能码): 2F keep-alive, 30 test, 31 equal-interval, 32 timed, 33 added,
    /// 34 hourly report, …
    pub function: u8,
    /// A down frame (centre → station).
    pub down: bool,
    /// Start marker: [`STX`] or [`SYN`].
    pub start: u8,
    /// The body (正文), between the start and the end marker.
    pub body: Vec<u8>,
    /// End marker.
    pub end: u8,
}

impl Frame {
    /// The station address as 10 upper-case hex digits (the registry's `sl651.station`).
    pub fn station_hex(&self) -> String {
        hex(&self.station)
    }
}

/// Upper-case hex digits of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Why bytes from the stream were not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Bytes before a start 7E 7E.
    Garbage,
    /// The up/down flag is neither 0 nor 8.
    BadFlag(u8),
    /// The start marker is neither STX nor SYN.
    BadStart(u8),
    /// The byte where the end marker belongs (by the length field) is no end marker: a wrong
    /// length, or a cut frame.
    BadEnd(u8),
    /// The stream ended inside a frame.
    Truncated,
    /// The CRC does not match.
    Crc {
        /// Carried by the frame.
        sent: u16,
        /// Computed over its bytes.
        computed: u16,
    },
}

impl FrameError {
    /// Reason code for dead letters.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::Crc { .. } => "sl651_crc",
            _ => "sl651_framing",
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Garbage => write!(f, "bytes outside a frame (no 7E 7E start before them)"),
            FrameError::BadFlag(b) => {
                write!(f, "byte 11: up/down flag {:X} is neither 0 (up) nor 8 (down)", b >> 4)
            }
            FrameError::BadStart(b) => write!(f, "byte 13: start marker {b:02X} is neither STX 02 nor SYN 16"),
            FrameError::BadEnd(b) => write!(
                f,
                "end marker: {b:02X} where the length field puts it is not ETX 03, ETB 17, ENQ 05, EOT 04, ACK 06, NAK 15 or ESC 1B (wrong length or cut frame)"
            ),
            FrameError::Truncated => write!(f, "the connection closed inside a frame (truncated)"),
            FrameError::Crc { sent, computed } => {
                write!(f, "CRC: the frame carries {sent:04X}, its bytes give {computed:04X}")
            }
        }
    }
}

/// Bytes the decoder could not use, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Why.
    pub error: FrameError,
    /// The bytes, as received.
    pub raw: Vec<u8>,
}

/// What the decoder found next in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A checked frame and its bytes.
    Frame(Frame, Vec<u8>),
    /// Bytes that were not a frame.
    Rejected(Rejected),
}

/// Incremental decoder over a byte stream: [`FrameDecoder::push`] what the socket gave,
/// then take [`FrameDecoder::next`] until it returns `None`.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder with nothing buffered.
    pub fn new() -> Self {
        FrameDecoder::default()
    }

    /// Appends bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held, waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// At the end of the stream: whatever is still held, rejected (a cut frame or garbage).
    pub fn finish(&mut self) -> Option<Rejected> {
        if self.buf.is_empty() {
            return None;
        }
        let error = if self.buf.starts_with(&START) { FrameError::Truncated } else { FrameError::Garbage };
        Some(Rejected { error, raw: std::mem::take(&mut self.buf) })
    }

    /// Rejects the first `n` bytes.
    fn reject(&mut self, n: usize, error: FrameError) -> Decoded {
        Decoded::Rejected(Rejected { error, raw: self.buf.drain(..n).collect() })
    }

    /// Rejects from the start up to the next 7E 7E (or everything held, less a trailing 7E).
    fn reject_to_next_start(&mut self, error: FrameError) -> Decoded {
        let upto =
            find_start(&self.buf, 1).unwrap_or_else(|| self.buf.len() - usize::from(self.buf.last() == Some(&0x7E)));
        self.reject(upto.max(1), error)
    }
}

impl Iterator for FrameDecoder {
    type Item = Decoded;

    /// The next frame or rejection, or `None` until more bytes arrive ([`FrameDecoder::push`]).
    fn next(&mut self) -> Option<Decoded> {
        if self.buf.is_empty() {
            return None;
        }
        match find_start(&self.buf, 0) {
            Some(0) => {}
            Some(at) => return Some(self.reject(at, FrameError::Garbage)),
            None => {
                // Keep a trailing 7E: it may begin a start.
                let keep = usize::from(self.buf.last() == Some(&0x7E));
                let garbage = self.buf.len() - keep;
                if garbage == 0 || garbage < MAX_GARBAGE {
                    return None;
                }
                return Some(self.reject(garbage, FrameError::Garbage));
            }
        }
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let flag = self.buf[11] >> 4;
        if flag != 0 && flag != 8 {
            return Some(self.reject_to_next_start(FrameError::BadFlag(self.buf[11])));
        }
        let start = self.buf[13];
        if start != STX && start != SYN {
            return Some(self.reject_to_next_start(FrameError::BadStart(start)));
        }
        let len = usize::from(u16::from_be_bytes([self.buf[11], self.buf[12]]) & 0x0FFF);
        let total = HEADER_LEN + len + TRAILER_LEN;
        if self.buf.len() < total {
            return None;
        }
        let end = self.buf[HEADER_LEN + len];
        if ![ETX, ETB, ENQ, EOT, ACK, NAK, ESC].contains(&end) {
            return Some(self.reject_to_next_start(FrameError::BadEnd(end)));
        }
        let sent = u16::from_be_bytes([self.buf[total - 2], self.buf[total - 1]]);
        let computed = crc16(&self.buf[..total - 2]);
        if sent != computed {
            // A corrupted frame: drop it, but no further than the next start inside it (or
            // beginning on its last byte), in case its length was what got corrupted.
            let upto = find_start(&self.buf[..(total + 1).min(self.buf.len())], 1).unwrap_or(total);
            return Some(self.reject(upto, FrameError::Crc { sent, computed }));
        }
        let raw: Vec<u8> = self.buf.drain(..total).collect();
        let down = flag == 8;
        let (centre, station) = if down {
            (raw[7], [raw[2], raw[3], raw[4], raw[5], raw[6]])
        } else {
            (raw[2], [raw[3], raw[4], raw[5], raw[6], raw[7]])
        };
        let frame = Frame {
            centre,
            station,
            password: u16::from_be_bytes([raw[8], raw[9]]),
            function: raw[10],
            down,
            start,
            body: raw[HEADER_LEN..HEADER_LEN + len].to_vec(),
            end,
        };
        Some(Decoded::Frame(frame, raw))
    }
}

/// Where the first 7E 7E at or after `from` begins.
fn find_start(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?.windows(2).position(|w| w == START).map(|p| p + from)
}

/// The bytes of `frame`, with its length field and CRC computed. `None` if the body is longer
/// than the 12-bit length allows.
pub fn encode(frame: &Frame) -> Option<Vec<u8>> {
    if frame.body.len() > MAX_BODY {
        return None;
    }
    let mut out = Vec::with_capacity(HEADER_LEN + frame.body.len() + TRAILER_LEN);
    out.extend_from_slice(&START);
    if frame.down {
        out.extend_from_slice(&frame.station);
        out.push(frame.centre);
    } else {
        out.push(frame.centre);
        out.extend_from_slice(&frame.station);
    }
    out.extend_from_slice(&frame.password.to_be_bytes());
    out.push(frame.function);
    let len = frame.body.len() as u16 | if frame.down { 0x8000 } else { 0 };
    out.extend_from_slice(&len.to_be_bytes());
    out.push(frame.start);
    out.extend_from_slice(&frame.body);
    out.push(frame.end);
    out.extend_from_slice(&crc16(&out).to_be_bytes());
    Some(out)
}

//! Fuzzing the SL 651 frame decoder and body parser: a deterministic generator mutates valid
//! frames (bit flips, truncations, length lies, inserted and random bytes, spliced streams)
//! and feeds them, in random chunks, through the decoder and the body parser. Nothing may
//! panic, every byte must be accounted for (frames + rejections = input), and an intact frame
//! after the damage must still decode.
//!
//! `SL651_FUZZ_FRAMES` sets the number of frames (default 1 000 000; each case is one mutated
//! frame followed by one intact frame, counted as two).

use riskwatch_core::Timestamp;
use riskwatch_ingest::sl651::frame::encode;
use riskwatch_ingest::sl651::report::{self, Element, Outgoing};
use riskwatch_ingest::sl651::{Decoded, Frame, FrameDecoder};

/// The password of the intact frames.
const INTACT: u16 = 0xBEEF;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn valid_frames() -> Vec<Vec<u8>> {
    let t = Timestamp(1_594_512_000_000);
    let station = [0x00, 0x12, 0x34, 0x56, 0x78];
    let report = |function: u8, elements: Vec<Element>| {
        let o = Outgoing { serial: 42, sent_at: t, station, category: 0x48, observed_at: t, elements };
        encode(&o.frame(1, 0x1234, function)).unwrap()
    };
    let level = Element::number(0x39, Some(28.77), 4, 3).unwrap();
    let rain = Element::number(0x26, Some(123.4), 3, 1).unwrap();
    vec![
        report(0x32, vec![level.clone(), rain.clone()]),
        report(0x33, vec![level.clone()]),
        report(0x34, vec![Element::five_minute_rain(&[Some(0.5); 12]), level.clone(), rain]),
        report(0x30, vec![Element { id: 0xFF0A, def: 0x08, data: vec![0x07] }]),
        report(
            0x32,
            vec![Element::number(0x39, None, 4, 3).unwrap(), Element::number(0x03, Some(-1.5), 2, 1).unwrap()],
        ),
    ]
}

fn mutate(rng: &mut Rng, frame: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut f = frame.to_vec();
    for _ in 0..=rng.below(3) {
        match rng.below(8) {
            0 if !f.is_empty() => {
                let at = rng.below(f.len());
                f[at] ^= 1 << rng.below(8);
            }
            1 => f.truncate(rng.below(f.len())),
            2 if f.len() > 12 => {
                // Length lie, keeping the flag.
                f[12] = rng.next() as u8;
                if rng.below(2) == 0 {
                    f[11] = (f[11] & 0xF0) | (rng.below(16) as u8);
                }
            }
            3 => {
                let at = rng.below(f.len() + 1);
                let n = rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                f.splice(at..at, bytes);
            }
            4 => {
                let n = rng.below(64);
                f = (0..n).map(|_| rng.next() as u8).collect();
            }
            5 => {
                // A start marker in the middle, or a frame inside a frame.
                let at = rng.below(f.len() + 1);
                let inner = &others[rng.below(others.len())];
                let cut = rng.below(inner.len());
                f.splice(at..at, inner[..cut].iter().copied());
            }
            6 if f.len() > 17 => {
                // Body bytes replaced, with the CRC made right again: the body parser's turn.
                let end = f.len() - 3;
                let at = 14 + rng.below(end - 14);
                f[at] = rng.next() as u8;
                let crc = riskwatch_ingest::sl651::crc::crc16(&f[..f.len() - 2]);
                let n = f.len();
                f[n - 2..].copy_from_slice(&crc.to_be_bytes());
            }
            _ if !f.is_empty() => {
                let at = rng.below(f.len());
                f[at] = 0x7E;
            }
            _ => f.push(rng.next() as u8),
        }
    }
    f
}

#[test]
fn a_million_mutated_frames_never_panic_and_intact_frames_still_decode() {
    let total: usize = std::env::var("SL651_FUZZ_FRAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let frames = valid_frames();
    // The intact frames: the same reports under another password, each with the case's
    // serial number, so that each can be recognised when it comes out of the decoder.
    let mut intact: Vec<Frame> = frames
        .iter()
        .map(|b| {
            let mut d = FrameDecoder::new();
            d.push(b);
            let Some(Decoded::Frame(mut f, _)) = d.next() else { panic!("a valid frame") };
            f.password = INTACT;
            f
        })
        .collect();
    let mut rng = Rng(0x5EED_0651_2014);
    let mut decoder = FrameDecoder::new();
    let (mut decoded, mut rejected, mut bodies_ok, mut bodies_bad) = (0u64, 0u64, 0u64, 0u64);
    let (mut pushed, mut accounted, mut intact_seen) = (0usize, 0usize, 0usize);
    let mut next_serial: u16 = 0;
    let mut missed = Vec::new();
    let cases = total.div_ceil(2);
    for case in 0..cases {
        let which = rng.below(frames.len());
        let mut stream = mutate(&mut rng, &frames[which], &frames);
        let good = &mut intact[which];
        good.body[..2].copy_from_slice(&(case as u16).to_be_bytes());
        stream.extend_from_slice(&encode(good).unwrap());
        pushed += stream.len();
        // In random chunks, as TCP delivers them; the stream goes on from case to case.
        let mut pos = 0;
        while pos < stream.len() {
            let end = (pos + 1 + rng.below(96)).min(stream.len());
            decoder.push(&stream[pos..end]);
            pos = end;
            for d in decoder.by_ref() {
                match d {
                    Decoded::Frame(f, raw) => {
                        accounted += raw.len();
                        decoded += 1;
                        if report::is_report(f.function) {
                            match report::parse(&f) {
                                Ok(_) => bodies_ok += 1,
                                Err(_) => bodies_bad += 1,
                            }
                        }
                        if f.password == INTACT {
                            let serial = u16::from_be_bytes([f.body[0], f.body[1]]);
                            // Every intact frame comes out once, in order.
                            while next_serial != serial && missed.len() < cases {
                                missed.push(next_serial);
                                next_serial = next_serial.wrapping_add(1);
                            }
                            next_serial = serial.wrapping_add(1);
                            intact_seen += 1;
                        }
                    }
                    Decoded::Rejected(r) => {
                        assert!(!r.raw.is_empty(), "case {case}: an empty rejection");
                        accounted += r.raw.len();
                        rejected += 1;
                    }
                }
            }
        }
    }
    if let Some(r) = decoder.finish() {
        accounted += r.raw.len();
        rejected += 1;
    }
    println!(
        "{} frames in {cases} cases: {decoded} decoded ({bodies_ok} bodies read, {bodies_bad} refused), {rejected} rejections, {intact_seen} intact frames seen",
        cases * 2
    );
    assert_eq!(accounted, pushed, "every byte is a frame or a rejection");
    assert!(rejected > 0 && bodies_bad > 0, "the mutations reach the CRC check and the body parser");
    // Resynchronisation: the intact frame after the damage decodes, whatever the damage was,
    // except where the damage itself forms a frame start that swallows it: 2 in 500 000 here.
    assert!(
        intact_seen * 10_000 >= cases * 9_999,
        "intact frames decoded: {intact_seen} of {cases}; first missed serials: {:?}",
        &missed[..missed.len().min(10)]
    );
}

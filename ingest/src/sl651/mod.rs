//! SL 651-2014 (水文监测数据通信规约): the protocol most hydrological remote terminal units
//! (RTUs) in China report in, over TCP, in HEX/BCD mode.
//!
//! Sans-I/O codec — [`frame`] (framing, CRC check, resynchronisation on 7E 7E), [`report`]
//! (the bodies of reports 30…34 and the centre's acknowledgement), [`elements`] (identifiers,
//! units, BCD) — then [`readings`] (stations and elements to the registry's sensors, dead
//! letters with reasons) and the TCP source [`server`], with its [`limits`] on peers. docs/wire-format.md ("SL 651-2014")
//! documents the layout with a frame worked byte by byte, the element table and the registry
//! binding. ASCII mode and multi-packet messages are not supported (dead-lettered).

pub mod crc;
pub mod elements;
pub mod frame;
pub mod limits;
pub mod readings;
pub mod report;
pub mod server;

pub use frame::{Decoded, Frame, FrameDecoder, FrameError, Rejected};
pub use limits::Sl651Limits;
pub use report::{Element, Outgoing, Report};
pub use server::{Sl651Server, Sl651Stats};

//! Monitor → host packets: status or streaming data.
//!
//! Data payload: `[flags] [record type] [2 unknown bytes] [N × 8-byte records]
//! [1 trailing byte]`. Flags: bits 3–0 sequence number, bit 4 over-current /
//! thermal kill, bit 5 output enabled. Records: main, USB, aux current (i16)
//! and voltage (u16), big-endian.

use super::status::{STATUS_LEN, STATUS_PACKET_TYPE};
use super::{ProtocolError, MAX_PAYLOAD};

/// Bytes before the first record.
pub const DATA_HEADER_LEN: usize = 4;
/// Bytes after the last record.
pub const DATA_TRAILER_LEN: usize = 1;
/// Bytes per record.
pub const RECORD_LEN: usize = 8;
/// Flags bit: over-current or thermal kill.
pub const FLAG_OVER_CURRENT: u8 = 0x10;
/// Flags bit: output enabled.
pub const FLAG_OUTPUT_ENABLED: u8 = 0x20;
const MAX_RECORDS: usize = (MAX_PAYLOAD - DATA_HEADER_LEN - DATA_TRAILER_LEN) / RECORD_LEN;

/// What a validated payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// A 58-byte status packet.
    Status,
    /// A streaming data packet.
    Data,
}

/// Recognise a monitor → host payload by its structure. This is the
/// decoder's second line of defence after the checksum: a status packet is
/// exactly 58 bytes starting 0x10; a data packet is `5 + 8N` bytes (N ≥ 1),
/// its flags byte has the two top bits clear and its record type is 0, 1 or 2.
/// (Old drivers accept only flags 0x20–0x2F and so throw away the very packet
/// that reports an over-current kill; this accepts it and reports it.)
#[inline]
pub fn classify_payload(p: &[u8]) -> Option<PacketKind> {
    let n = p.len();
    if n == STATUS_LEN {
        return (p[0] == STATUS_PACKET_TYPE).then_some(PacketKind::Status);
    }
    if n >= DATA_HEADER_LEN + RECORD_LEN + DATA_TRAILER_LEN
        && (n - DATA_HEADER_LEN - DATA_TRAILER_LEN).is_multiple_of(RECORD_LEN)
        && p[0] & 0xC0 == 0
        && p[1] <= 2
    {
        return Some(PacketKind::Data);
    }
    None
}

/// Record type of a data packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    /// Measurements.
    Measurement,
    /// Zero calibration: record 0 fine, record 1 coarse.
    ZeroCal,
    /// Reference calibration: record 0 fine, record 1 coarse.
    RefCal,
}

impl RecordType {
    /// Wire value.
    pub fn to_byte(self) -> u8 {
        match self {
            RecordType::Measurement => 0,
            RecordType::ZeroCal => 1,
            RecordType::RefCal => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(RecordType::Measurement),
            1 => Some(RecordType::ZeroCal),
            2 => Some(RecordType::RefCal),
            _ => None,
        }
    }
}

/// One raw 8-byte record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawRecord {
    /// Main current word (LSB set = coarse range).
    pub main: i16,
    /// USB current word.
    pub usb: i16,
    /// Aux current word.
    pub aux: i16,
    /// Voltage word (two low bits are markers).
    pub voltage: u16,
}

impl RawRecord {
    #[inline]
    fn read(b: &[u8]) -> RawRecord {
        RawRecord {
            main: i16::from_be_bytes([b[0], b[1]]),
            usb: i16::from_be_bytes([b[2], b[3]]),
            aux: i16::from_be_bytes([b[4], b[5]]),
            voltage: u16::from_be_bytes([b[6], b[7]]),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.main.to_be_bytes());
        out.extend_from_slice(&self.usb.to_be_bytes());
        out.extend_from_slice(&self.aux.to_be_bytes());
        out.extend_from_slice(&self.voltage.to_be_bytes());
    }
}

/// A parsed data packet borrowing its payload.
#[derive(Debug, Clone, Copy)]
pub struct DataPacket<'a> {
    /// Flags byte.
    pub flags: u8,
    /// Record type.
    pub record_type: RecordType,
    /// The two header bytes of unknown meaning.
    pub unknown: [u8; 2],
    records: &'a [u8],
    /// The trailing byte.
    pub trailer: u8,
}

impl<'a> DataPacket<'a> {
    /// Parse a payload that [`classify_payload`] called [`PacketKind::Data`].
    pub fn parse(p: &'a [u8]) -> Option<DataPacket<'a>> {
        if classify_payload(p) != Some(PacketKind::Data) {
            return None;
        }
        Some(DataPacket {
            flags: p[0],
            record_type: RecordType::from_byte(p[1])?,
            unknown: [p[2], p[3]],
            records: &p[DATA_HEADER_LEN..p.len() - DATA_TRAILER_LEN],
            trailer: p[p.len() - 1],
        })
    }

    /// Sequence number (flags bits 3–0).
    #[inline]
    pub fn seq(&self) -> u8 {
        self.flags & 0x0F
    }

    /// Over-current / thermal kill flag.
    pub fn over_current(&self) -> bool {
        self.flags & FLAG_OVER_CURRENT != 0
    }

    /// Output enabled flag.
    pub fn output_enabled(&self) -> bool {
        self.flags & FLAG_OUTPUT_ENABLED != 0
    }

    /// Number of records.
    #[inline]
    pub fn len(&self) -> usize {
        self.records.len() / RECORD_LEN
    }

    /// Whether there are no records (never true for a parsed packet).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Record `i`, if present.
    #[inline]
    pub fn record(&self, i: usize) -> Option<RawRecord> {
        self.records
            .get(i * RECORD_LEN..(i + 1) * RECORD_LEN)
            .map(RawRecord::read)
    }

    /// All records in order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = RawRecord> + 'a {
        self.records.chunks_exact(RECORD_LEN).map(RawRecord::read)
    }
}

/// Append one framed data packet to `out` (the simulator's side).
pub fn encode_data_packet(
    flags: u8,
    record_type: RecordType,
    records: &[RawRecord],
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    if records.is_empty() || records.len() > MAX_RECORDS {
        return Err(ProtocolError::BadRecordCount(records.len()));
    }
    let mut payload = Vec::with_capacity(DATA_HEADER_LEN + records.len() * RECORD_LEN + 1);
    payload.extend_from_slice(&[flags, record_type.to_byte(), 0, 0]);
    for r in records {
        r.write(&mut payload);
    }
    payload.push(0);
    super::encode_frame(&payload, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FrameDecoder;

    #[test]
    fn data_packet_round_trip() {
        let recs: Vec<RawRecord> = (0..5)
            .map(|i| RawRecord {
                main: -3 + i,
                usb: 1000 * i,
                aux: -32768,
                voltage: 33600 + i as u16,
            })
            .collect();
        let mut wire = Vec::new();
        encode_data_packet(0x27, RecordType::Measurement, &recs, &mut wire).unwrap();
        assert_eq!(wire.len(), 2 + 4 + 40 + 1);
        let mut d = FrameDecoder::new();
        d.push(&wire);
        let (_, p) = d.next_frame(|p| classify_payload(p).is_some()).unwrap();
        let pkt = DataPacket::parse(p).unwrap();
        assert_eq!(pkt.seq(), 7);
        assert!(pkt.output_enabled() && !pkt.over_current());
        assert_eq!(pkt.records().collect::<Vec<_>>(), recs);
        assert_eq!(pkt.record(4), Some(recs[4]));
        assert_eq!(pkt.record(5), None);
        assert!(encode_data_packet(0x20, RecordType::ZeroCal, &[], &mut wire).is_err());
        assert!(encode_data_packet(
            0x20,
            RecordType::ZeroCal,
            &[RawRecord::default(); 32],
            &mut wire
        )
        .is_err());
        assert!(encode_data_packet(
            0x20,
            RecordType::ZeroCal,
            &[RawRecord::default(); 31],
            &mut wire
        )
        .is_ok());
    }

    #[test]
    fn classification() {
        assert_eq!(
            classify_payload(&[0x20, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0]),
            Some(PacketKind::Data)
        );
        assert_eq!(
            classify_payload(&[0x40, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0]),
            None
        );
        assert_eq!(
            classify_payload(&[0x20, 3, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0]),
            None
        );
        assert_eq!(
            classify_payload(&[0x20, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 0]),
            None
        );
        let mut s = [0u8; STATUS_LEN];
        s[0] = 0x10;
        assert_eq!(classify_payload(&s), Some(PacketKind::Status));
        s[0] = 0x20;
        assert_eq!(classify_payload(&s), None);
    }
}

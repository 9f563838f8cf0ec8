//! The Monsoon serial protocol: framing, host commands, status and data
//! packets. Both the driver and the simulator use these types; neither has its
//! own copy of any encoding.
//!
//! Framing, both directions: `[L] [payload of L-1 bytes] [checksum]` with
//! `L = len(payload) + 1` and `checksum = (L + Σ payload) mod 256`.

mod command;
mod packet;
mod status;

pub use command::{
    current_limit_to_raw, raw_to_current_limit, raw_to_voltage, voltage_to_raw, Command,
    UsbPassthrough,
};
pub use packet::{
    classify_payload, encode_data_packet, DataPacket, PacketKind, RawRecord, RecordType,
    DATA_HEADER_LEN, DATA_TRAILER_LEN, FLAG_OUTPUT_ENABLED, FLAG_OVER_CURRENT, RECORD_LEN,
};
pub use status::{voltage_lsb_v, Status, STATUS_LEN, STATUS_PACKET_TYPE};

/// Longest payload a frame can carry (`L` is one byte).
pub const MAX_PAYLOAD: usize = 254;
/// Longest frame on the wire: length byte, payload, checksum.
pub const MAX_FRAME: usize = MAX_PAYLOAD + 2;

/// Protocol encoding errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A payload too long for one frame.
    #[error("payload of {0} bytes does not fit a frame (max {MAX_PAYLOAD})")]
    PayloadTooLong(usize),
    /// A payload that is no known host command.
    #[error("unknown command payload {0:02x?}")]
    UnknownCommand(Vec<u8>),
    /// A status payload of the wrong length or type.
    #[error("status payload must be {STATUS_LEN} bytes starting 0x10, got {len} bytes starting {first:#04x}")]
    BadStatus {
        /// Payload length.
        len: usize,
        /// First byte.
        first: u8,
    },
    /// A data packet with too many records for one frame, or none.
    #[error("data packet with {0} records does not fit a frame (1..=31)")]
    BadRecordCount(usize),
}

/// The frame checksum: `(L + Σ payload) mod 256`.
#[inline]
pub fn checksum(len_byte: u8, payload: &[u8]) -> u8 {
    // Summing in u32 lets the compiler vectorise; payloads are ≤ 254 bytes,
    // so the sum cannot overflow.
    let sum: u32 = payload.iter().map(|&b| u32::from(b)).sum::<u32>() + u32::from(len_byte);
    (sum & 0xFF) as u8
}

/// Append one frame carrying `payload` to `out`.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    if payload.is_empty() || payload.len() > MAX_PAYLOAD {
        return Err(ProtocolError::PayloadTooLong(payload.len()));
    }
    let l = (payload.len() + 1) as u8;
    out.push(l);
    out.extend_from_slice(payload);
    out.push(checksum(l, payload));
    Ok(())
}

/// A frame found by [`FrameDecoder::next_frame_after`].
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Stream offset of its length byte.
    pub offset: u64,
    /// Garbage bytes skipped right before it.
    pub skipped: u64,
    /// The payload.
    pub payload: &'a [u8],
}

/// Counters kept by [`FrameDecoder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Bytes pushed in.
    pub bytes: u64,
    /// Frames accepted.
    pub frames: u64,
    /// Bytes skipped while scanning for a valid frame.
    pub garbage_bytes: u64,
    /// Number of separate runs of skipped bytes (each a resynchronisation).
    pub resyncs: u64,
    /// Candidates with a right checksum that the caller's structure check
    /// refused (false frames inside garbage, or unbelievable ones).
    pub rejected: u64,
    /// Stream offset of the first skipped byte, if any.
    pub first_garbage_offset: Option<u64>,
    /// Stream offset of the most recent skipped byte, if any.
    pub last_garbage_offset: Option<u64>,
}

/// Incremental frame decoder that resynchronises after garbage.
///
/// Feed bytes with [`push`](Self::push) and take frames with
/// [`next_frame`](Self::next_frame), which only returns frames whose checksum
/// is right *and* whose payload the caller's `accept` predicate recognises —
/// Monsoon's 8-bit checksum alone accepts one random candidate in 256, so the
/// structure check is what keeps resynchronisation honest. After a bad
/// candidate it moves one byte on, so every call either consumes at least one
/// byte or waits for more input: it cannot loop forever, and it never needs
/// more than [`MAX_FRAME`] bytes of look-ahead.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    in_garbage: bool,
    /// Bytes skipped since the last accepted frame.
    skipped: u64,

    stats: FrameStats,
}

impl FrameDecoder {
    /// A decoder at stream offset 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 && (self.pos >= self.buf.len() / 2 || self.pos > 1 << 16) {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
        self.stats.bytes += data.len() as u64;
    }

    /// Counters so far.
    pub fn stats(&self) -> FrameStats {
        self.stats
    }

    /// Stream offset of the next unconsumed byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Bytes received but not yet consumed (an incomplete frame, or garbage
    /// waiting to be disproved).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Forget all buffered bytes (counted as garbage) and keep the offset.
    pub fn clear(&mut self) {
        let n = self.pending();
        if n > 0 {
            self.skip(n);
        }
    }

    fn skip(&mut self, n: usize) {
        let off = self.offset();
        if !self.in_garbage {
            self.in_garbage = true;
            self.stats.resyncs += 1;
        }
        if self.stats.first_garbage_offset.is_none() {
            self.stats.first_garbage_offset = Some(off);
        }
        self.stats.last_garbage_offset = Some(off + n as u64 - 1);
        self.stats.garbage_bytes += n as u64;
        self.skipped += n as u64;
        self.pos += n;
    }

    /// Give up on the candidate frame at the scan position (the line went
    /// quiet before it completed: a corrupted length byte, not a frame in
    /// flight) and move one byte on. Returns false when nothing is pending.
    pub fn skip_stalled(&mut self) -> bool {
        if self.pending() == 0 {
            return false;
        }
        self.skip(1);
        true
    }

    /// The next valid frame: `(stream offset of its length byte, payload)`.
    /// `None` means more bytes are needed.
    pub fn next_frame(&mut self, accept: impl Fn(&[u8]) -> bool) -> Option<(u64, &[u8])> {
        self.next_frame_after(|p, _| accept(p))
            .map(|f| (f.offset, f.payload))
    }

    /// Like [`next_frame`](Self::next_frame), but `accept` also learns how
    /// many bytes were skipped since the last accepted frame, so that a
    /// candidate found inside garbage can be held to a stricter standard.
    pub fn next_frame_after(&mut self, accept: impl Fn(&[u8], u64) -> bool) -> Option<Frame<'_>> {
        loop {
            let avail = &self.buf[self.pos..];
            let &l = avail.first()?;
            let l = usize::from(l);
            if l < 2 {
                self.skip(1);
                continue;
            }
            if avail.len() < l + 1 {
                return None;
            }
            let payload = &avail[1..l];
            let sum_ok = checksum(l as u8, payload) == avail[l];
            if sum_ok && accept(payload, self.skipped) {
                let off = self.offset();
                let start = self.pos + 1;
                self.pos += l + 1;
                self.in_garbage = false;
                let skipped = self.skipped;
                self.skipped = 0;
                self.stats.frames += 1;
                return Some(Frame {
                    offset: off,
                    skipped,
                    payload: &self.buf[start..start + l - 1],
                });
            }
            if sum_ok {
                self.stats.rejected += 1;
            }
            self.skip(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_checksum() {
        let mut out = Vec::new();
        encode_frame(&[0x01, 0x00, 0x00], &mut out).unwrap();
        assert_eq!(out, vec![4, 1, 0, 0, 5]);
        encode_frame(&[0x03, 0x00], &mut out).unwrap();
        assert_eq!(&out[5..], &[3, 3, 0, 6]);
        let mut d = FrameDecoder::new();
        d.push(&out);
        assert_eq!(
            d.next_frame(|_| true).map(|f| f.1.to_vec()),
            Some(vec![1, 0, 0])
        );
        assert_eq!(
            d.next_frame(|_| true).map(|f| (f.0, f.1.to_vec())),
            Some((5, vec![3, 0]))
        );
        assert!(d.next_frame(|_| true).is_none());
        assert_eq!(d.stats().garbage_bytes, 0);
    }

    #[test]
    fn resync_after_garbage_and_split_input() {
        let mut wire = vec![0xFF, 0x00, 0x07, 0x99];
        encode_frame(&[9, 8, 7], &mut wire).unwrap();
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b));
            while let Some((off, p)) = d.next_frame(|_| true) {
                got.push((off, p.to_vec()));
            }
        }
        // 0xFF waits for 256 bytes; only `clear`/more input can disprove it.
        assert!(got.is_empty());
        d.push(&[0u8; 256]);
        while let Some((off, p)) = d.next_frame(|p| p == [9, 8, 7]) {
            got.push((off, p.to_vec()));
        }
        assert_eq!(got, vec![(4, vec![9, 8, 7])]);
        assert_eq!(d.stats().first_garbage_offset, Some(0));
        assert!(encode_frame(&[], &mut wire).is_err());
        assert!(encode_frame(&[0; 255], &mut wire).is_err());
    }
}

//! From bytes to calibrated samples: the pure [`StreamDecoder`] and the
//! reader thread ([`SampleStream`]) that runs it against the port.
//!
//! What the decoder guarantees:
//! - **Resynchronisation.** A bad checksum or an unrecognised payload moves
//!   the scan one byte on; the next valid frame is found wherever it starts.
//! - **Gap accounting.** Each data packet carries a 4-bit sequence number.
//!   Missing numbers are lost packets; they are turned into lost samples and
//!   reported as a [`Gap`] right before the samples that follow it, and the
//!   indices after the gap skip the lost samples so timestamps stay exact.
//! - **Index timestamps.** Sample `i` is at `i / 5000` s after sampling
//!   started. The host clock is never used for time.
//! - **No uncalibrated samples.** Measurements before both a zero and a
//!   reference calibration exist are dropped and reported as
//!   [`StreamEvent::Uncalibrated`].
//!
//! Calibration packets share the sequence numbers but carry no measurement,
//! so a lost calibration packet must not be counted as lost samples. The
//! decoder learns where calibration packets fall in the packet sequence
//! (their period, in packets) and subtracts the calibration packets a gap is
//! predicted to contain. Two choices here are inferences, not documented
//! protocol, and both are options: the sequence restarts at 0 on start
//! ([`DecoderOptions::first_seq`]) and sampling opens with a zero and a
//! reference calibration packet ([`DecoderOptions::initial_calibration`]).
//! The simulator behaves so. Gaps of 16 packets or more alias with the 4-bit
//! sequence number and are under-counted by a multiple of 16 packets; that
//! needs ≥ 3 ms of consecutive loss and is what a stall report is for.

mod reader;

pub use reader::SampleStream;
pub(crate) use reader::{lock as reader_lock, spawn_reader, ReaderCmd, ReaderConfig, ReaderShared};

use crate::calibration::{CalKind, Calibration};
use crate::protocol::{
    classify_payload, DataPacket, FrameDecoder, FrameStats, PacketKind, RecordType, Status,
};
use crate::Sample;

/// Samples lost in transport, reported where they were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Index of the first lost sample.
    pub from_index: u64,
    /// Number of lost samples (indices `from_index .. from_index + lost`).
    pub lost: u64,
    /// Sequence number of the last packet before the gap.
    pub seq_before: u8,
    /// Sequence number of the first packet after the gap.
    pub seq_after: u8,
    /// Packets missing between them, calibration packets included.
    pub lost_packets: u32,
    /// How many of those are predicted to have been calibration packets.
    pub lost_calibration_packets: u32,
}

/// Why a stream ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The port reported end of file, hang-up or an I/O error.
    #[error("monitor disconnected after {} ({reason})", after(*.last_index))]
    Disconnected {
        /// Index of the last sample decoded, if any.
        last_index: Option<u64>,
        /// What the port said.
        reason: String,
    },
}

fn after(i: Option<u64>) -> String {
    match i {
        Some(i) => format!("sample {i}"),
        None => "no samples".into(),
    }
}

/// What the stream delivers, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// Calibrated samples, indices increasing (consecutive unless a gap or
    /// an uncalibrated run was reported in between).
    Samples(Vec<Sample>),
    /// Samples lost in transport; the next samples start after them.
    Gap(Gap),
    /// A status packet (replies to status requests, also while sampling).
    Status(Status),
    /// The monitor flagged an over-current or thermal kill at this index.
    OverCurrent {
        /// Index of the first sample of the flagged packet.
        index: u64,
    },
    /// Measurements dropped because calibration was not yet complete
    /// (a contiguous range; reported once calibration is complete, before a
    /// gap that interrupts the range, or at the end).
    Uncalibrated {
        /// First dropped index.
        from_index: u64,
        /// Number of dropped samples.
        count: u64,
    },
    /// No data arrived for a while (the stream goes on when data resumes).
    Stalled {
        /// Next sample index expected.
        at_index: u64,
        /// Milliseconds without data so far.
        silent_ms: u64,
    },
    /// The stream ended with an error; nothing follows.
    Error(StreamError),
}

/// Inferred protocol behaviour the decoder relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderOptions {
    /// Hardware revision (1 → 62.5 µV voltage LSB); status packets seen in
    /// the stream update it.
    pub hardware_revision: u8,
    /// Sequence number of the first packet after start; `None` counts no loss
    /// before the first packet received. Default `Some(0)`.
    pub first_seq: Option<u8>,
    /// Expect the stream to open with a zero (packet 0) and a reference
    /// (packet 1) calibration packet. Default `true`.
    pub initial_calibration: bool,
    /// Samples between calibration pairs, as asked by the start command
    /// (1000 ms → 5000); used to predict lost calibration packets until
    /// their period has been seen. Default `Some(5000)`.
    pub calibration_interval_samples: Option<u64>,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            hardware_revision: 0,
            first_seq: Some(0),
            initial_calibration: true,
            calibration_interval_samples: Some(5000),
        }
    }
}

/// Counters of a decode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Framing counters (bytes, frames, garbage, resyncs).
    pub frames: FrameStats,
    /// Status packets.
    pub status_packets: u64,
    /// Measurement packets.
    pub measurement_packets: u64,
    /// Calibration packets received.
    pub calibration_packets: u64,
    /// Samples delivered.
    pub samples: u64,
    /// Packets missing from the sequence.
    pub lost_packets: u64,
    /// Of those, predicted calibration packets.
    pub lost_calibration_packets: u64,
    /// Samples lost in gaps.
    pub lost_samples: u64,
    /// Gap events.
    pub gaps: u64,
    /// Measurements dropped before calibration.
    pub uncalibrated_samples: u64,
    /// Over-current events.
    pub over_current_events: u64,
    /// Packets whose corrupted sequence number was repaired from their
    /// neighbours.
    pub repaired_seq: u64,
    /// Index the next sample will get.
    pub next_index: u64,
}

/// Where the calibration packets fall in the packet sequence: per kind
/// (zero, reference) the packet number of the last one received — or, before
/// any, where the opening one is expected — and one period in packets shared
/// by both kinds: the smallest spacing seen between two of the same kind,
/// or, until one was seen, what the calibration interval asked for at start
/// implies.
#[derive(Debug, Clone, Copy, Default)]
struct CalSchedule {
    last: [Option<u64>; 2],
    anchor: [Option<u64>; 2],
    learned: Option<u64>,
}

impl CalSchedule {
    fn observe(&mut self, kind: usize, pkt: u64) {
        if let Some(l) = self.last[kind].or(self.anchor[kind]) {
            let d = pkt.saturating_sub(l);
            if d > 0 {
                self.learned = Some(self.learned.map_or(d, |p| p.min(d)));
            }
        }
        self.last[kind] = Some(pkt);
        self.anchor[kind] = None;
    }

    /// Predicted calibration packets among packet numbers `from .. to`.
    fn predicted(&self, from: u64, to: u64, prior: Option<u64>) -> u64 {
        let period = self.learned.or(prior).filter(|&p| p > 0);
        (0..2)
            .map(|k| {
                let anchor = self.anchor[k].filter(|a| (from..to).contains(a));
                let Some(base) = self.last[k].or(self.anchor[k]) else {
                    return 0;
                };
                let periodic = match period {
                    // k ≥ 1 with from ≤ base + k·p < to.
                    Some(p) if to > base + 1 => {
                        let first_k = if from > base {
                            (from - base).div_ceil(p)
                        } else {
                            1
                        };
                        let last_k = (to - 1 - base) / p;
                        last_k.saturating_sub(first_k - 1)
                    }
                    _ => 0,
                };
                u64::from(anchor.is_some()) + periodic
            })
            .sum()
    }
}

/// Records per packet of one record type: confirmed after three packets in
/// a row agree, so one corrupted-but-accepted packet cannot change it.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    confirmed: Option<usize>,
    candidate: usize,
    run: u8,
}

impl Shape {
    fn see(&mut self, n: usize) {
        if n == self.candidate {
            self.run = self.run.saturating_add(1);
        } else {
            self.candidate = n;
            self.run = 1;
        }
        if self.run >= 3 {
            self.confirmed = Some(n);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PendingGap {
    seq_before: u8,
    seq_after: u8,
    packets: u64,
    cal_packets: u64,
}

#[derive(Debug)]
struct State {
    opts: DecoderOptions,
    cal: Calibration,
    next_index: u64,
    last_seq: Option<u8>,
    /// Packet number the next packet would have with no loss.
    next_packet: u64,
    sched: CalSchedule,
    /// Records per measurement packet, once one was seen.
    records: Option<u64>,
    pending_gap: Option<PendingGap>,
    /// Records per packet of each record type, once confirmed.
    shape: [Shape; 3],
    /// The newest data packet, held back until the one after it shows
    /// whether its sequence number can be believed (empty: none held).
    held: Vec<u8>,
    /// Garbage bytes skipped right before the held packet.
    held_skipped: u64,
    /// Sequence number of the newest accepted data packet (held or not).
    newest_seq: Option<u8>,
    /// Shortest data frame seen on the wire, bytes.
    min_frame: Option<u64>,
    uncal: Option<(u64, u64)>,
    over_current: bool,
    stats: DecodeStats,
}

impl State {
    fn new(opts: DecoderOptions) -> Self {
        let mut sched = CalSchedule::default();
        if opts.initial_calibration {
            sched.anchor = [Some(0), Some(1)];
        }
        State {
            opts,
            cal: Calibration::new(opts.hardware_revision),
            next_index: 0,
            last_seq: None,
            next_packet: 0,
            sched,
            records: None,
            pending_gap: None,
            shape: [Shape::default(); 3],
            held: Vec::new(),
            held_skipped: 0,
            newest_seq: None,
            min_frame: None,
            uncal: None,
            over_current: false,
            stats: DecodeStats::default(),
        }
    }

    /// Whether a checksum-valid candidate is believable. A frame right
    /// after the previous one always is. One found by scanning through
    /// garbage is where false frames come from (the 8-bit checksum passes
    /// one random candidate in 256), so it must also look like the packets
    /// seen so far — the same record count for its type — and its sequence
    /// number must not claim more lost packets than the skipped bytes could
    /// have held. Rejecting a real frame only loses it (the next frame's
    /// sequence number accounts for it); accepting a false one would corrupt
    /// the accounting.
    fn plausible(&self, p: &[u8], skipped: u64) -> bool {
        match classify_payload(p) {
            None => false,
            Some(PacketKind::Status) => true,
            Some(PacketKind::Data) if skipped == 0 => true,
            Some(PacketKind::Data) => {
                let records = (p.len()
                    - crate::protocol::DATA_HEADER_LEN
                    - crate::protocol::DATA_TRAILER_LEN)
                    / crate::protocol::RECORD_LEN;
                if self.shape[usize::from(p[1].min(2))]
                    .confirmed
                    .is_some_and(|n| n != records)
                {
                    return false;
                }
                let Some(last) = self.newest_seq else {
                    return true;
                };
                let lost = u64::from((p[0] & 0x0F).wrapping_sub(last + 1) & 0x0F);
                lost <= skipped.div_ceil(self.min_frame.unwrap_or(14).max(1))
            }
        }
    }

    fn status(&mut self, s: Status, out: &mut Vec<StreamEvent>) {
        self.stats.status_packets += 1;
        if s.hardware_revision != self.opts.hardware_revision {
            self.opts.hardware_revision = s.hardware_revision;
            self.cal.set_hardware_revision(s.hardware_revision);
        }
        out.push(StreamEvent::Status(s));
    }

    /// A data packet came off the wire: release the one held before it,
    /// judged by this one's sequence number, and hold this one.
    fn accept(&mut self, payload: &[u8], skipped: u64, out: &mut Vec<StreamEvent>) {
        let Some(pkt) = DataPacket::parse(payload) else {
            return;
        };
        self.shape[usize::from(pkt.record_type.to_byte())].see(pkt.len());
        let wire = (payload.len() + 2) as u64;
        self.min_frame = Some(self.min_frame.map_or(wire, |m| m.min(wire)));
        self.newest_seq = Some(pkt.seq());
        self.release(Some((pkt.seq(), skipped)), out);
        self.held.extend_from_slice(payload);
        self.held_skipped = skipped;
    }

    /// Process the held packet. Monsoon's checksum is an 8-bit sum, so two
    /// compensating corrupted bytes pass it; if one of them was in the flags
    /// byte, the packet claims a gap that is not there. The next packet
    /// tells: when the last good packet, the held one and the next one sit
    /// back to back on the wire (no garbage between them) and the next one
    /// is numbered two after the last good one, the held one was the packet
    /// in between, and its sequence number is repaired.
    fn release(&mut self, next: Option<(u8, u64)>, out: &mut Vec<StreamEvent>) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        if let Some(pkt) = DataPacket::parse(&held) {
            let mut seq = pkt.seq();
            let aliased = self.aliased_packets(seq, self.held_skipped);
            if let (Some(last), Some((next_seq, 0)), 0) = (self.last_seq, next, self.held_skipped) {
                let e = (last + 1) & 0x0F;
                if seq != e && next_seq == (e + 1) & 0x0F {
                    self.stats.repaired_seq += 1;
                    seq = e;
                }
            }
            self.data(pkt, seq, aliased, out);
        }
        self.reuse(held);
    }

    fn reuse(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        self.held = buf;
    }

    /// Whole rounds of 16 packets hidden in a gap. Sequence numbers are
    /// 4 bits, so 16 lost packets look like none — but packets lost to
    /// corruption leave their bytes behind as garbage: when the garbage
    /// skipped before this packet holds about 16 or more measurement frames
    /// more than the sequence number says, the rounds are added back.
    /// (Packets lost without a trace — dropped whole — cannot be counted
    /// this way; 16 of those in a row still alias.)
    fn aliased_packets(&self, seq: u8, skipped: u64) -> u64 {
        let (Some(last), Some(n)) = (self.last_seq, self.shape[0].confirmed) else {
            return 0;
        };
        let frame = (n * crate::protocol::RECORD_LEN
            + crate::protocol::DATA_HEADER_LEN
            + crate::protocol::DATA_TRAILER_LEN
            + 2) as u64;
        let k = u64::from(seq.wrapping_sub(last.wrapping_add(1)) & 0x0F);
        let frames = skipped / frame;
        (frames + 8).saturating_sub(k) / 16 * 16
    }

    fn data(&mut self, pkt: DataPacket<'_>, seq: u8, aliased: u64, out: &mut Vec<StreamEvent>) {
        let expected = match self.last_seq {
            Some(l) => Some((l + 1) & 0x0F),
            None => self.opts.first_seq,
        };
        if let Some(e) = expected {
            let lost = u64::from(seq.wrapping_sub(e) & 0x0F) + aliased;
            if lost > 0 {
                let from = self.next_packet;
                let to = from + lost;
                let prior = match (self.opts.calibration_interval_samples, self.records) {
                    (Some(i), Some(n)) if n > 0 => Some(i.div_ceil(n) + 2),
                    _ => None,
                };
                let cal = self.sched.predicted(from, to, prior).min(lost);
                self.stats.lost_packets += lost;
                self.stats.lost_calibration_packets += cal;
                let g = self.pending_gap.get_or_insert(PendingGap {
                    seq_before: e.wrapping_sub(1) & 0x0F,
                    seq_after: seq,
                    packets: 0,
                    cal_packets: 0,
                });
                g.seq_after = seq;
                g.packets += lost;
                g.cal_packets += cal;
                self.next_packet = to;
            }
        }
        let this_packet = self.next_packet;
        self.next_packet += 1;
        self.last_seq = Some(seq);

        if pkt.over_current() && !self.over_current {
            self.stats.over_current_events += 1;
            out.push(StreamEvent::OverCurrent {
                index: self.next_index,
            });
        }
        self.over_current = pkt.over_current();

        match pkt.record_type {
            RecordType::ZeroCal | RecordType::RefCal => {
                self.stats.calibration_packets += 1;
                let (kind, slot) = if pkt.record_type == RecordType::ZeroCal {
                    (CalKind::Zero, 0)
                } else {
                    (CalKind::Reference, 1)
                };
                self.sched.observe(slot, this_packet);
                if let (Some(fine), Some(coarse)) = (pkt.record(0), pkt.record(1)) {
                    self.cal.update(kind, fine, coarse);
                }
                if self.cal.is_ready() {
                    self.flush_uncalibrated(out);
                }
            }
            RecordType::Measurement => self.measurement(pkt, out),
        }
    }

    fn measurement(&mut self, pkt: DataPacket<'_>, out: &mut Vec<StreamEvent>) {
        self.stats.measurement_packets += 1;
        let n = pkt.len() as u64;
        self.records = Some(n);
        if let Some(g) = self.pending_gap.take() {
            let lost = (g.packets - g.cal_packets) * n;
            if lost > 0 {
                // Uncalibrated runs are reported as contiguous ranges.
                self.flush_uncalibrated(out);
                self.stats.gaps += 1;
                self.stats.lost_samples += lost;
                out.push(StreamEvent::Gap(Gap {
                    from_index: self.next_index,
                    lost,
                    seq_before: g.seq_before,
                    seq_after: g.seq_after,
                    lost_packets: g.packets.min(u64::from(u32::MAX)) as u32,
                    lost_calibration_packets: g.cal_packets.min(u64::from(u32::MAX)) as u32,
                }));
                self.next_index += lost;
            }
        }
        if !self.cal.is_ready() {
            let u = self.uncal.get_or_insert((self.next_index, 0));
            u.1 += n;
            self.stats.uncalibrated_samples += n;
            self.next_index += n;
            return;
        }
        let v = samples_vec(out);
        v.reserve(pkt.len());
        for r in pkt.records() {
            // `convert` is Some: readiness was checked above.
            if let Some((m, u, a, volts)) = self.cal.convert(r) {
                v.push(Sample {
                    index: self.next_index,
                    main_current_a: m,
                    usb_current_a: u,
                    aux_current_a: a,
                    voltage_v: volts,
                });
                self.next_index += 1;
            }
        }
        self.stats.samples += n;
    }

    fn flush_uncalibrated(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some((from_index, count)) = self.uncal.take() {
            out.push(StreamEvent::Uncalibrated { from_index, count });
        }
    }
}

fn samples_vec(out: &mut Vec<StreamEvent>) -> &mut Vec<Sample> {
    if !matches!(out.last(), Some(StreamEvent::Samples(_))) {
        out.push(StreamEvent::Samples(Vec::with_capacity(512)));
    }
    match out.last_mut() {
        Some(StreamEvent::Samples(v)) => v,
        _ => unreachable!("a Samples event was just pushed"),
    }
}

/// Byte stream → events. Pure: no I/O, no clock; the reader thread, the
/// offline `decode` command, the benchmark and the fuzz test all use it.
#[derive(Debug)]
pub struct StreamDecoder {
    frames: FrameDecoder,
    state: State,
}

impl StreamDecoder {
    /// A decoder at the start of a sampling session.
    pub fn new(opts: DecoderOptions) -> Self {
        StreamDecoder {
            frames: FrameDecoder::new(),
            state: State::new(opts),
        }
    }

    /// Start a new sampling session (index 0, fresh calibration) without
    /// losing the byte offset.
    pub fn restart(&mut self, opts: DecoderOptions) {
        let base = self.frames.stats();
        self.state = State::new(opts);
        self.state.stats.frames = base;
    }

    /// Decode `bytes`, appending events to `out`. Consecutive samples are
    /// appended to a trailing [`StreamEvent::Samples`] already in `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<StreamEvent>) {
        self.frames.push(bytes);
        let st = &mut self.state;
        while let Some(f) = self
            .frames
            .next_frame_after(|p, skipped| st.plausible(p, skipped))
        {
            match classify_payload(f.payload) {
                Some(PacketKind::Status) => {
                    if let Ok(s) = Status::decode(f.payload) {
                        st.status(s, out);
                    }
                }
                Some(PacketKind::Data) => st.accept(f.payload, f.skipped, out),
                None => {}
            }
        }
    }

    /// The line has been quiet for a while: bytes still waiting to complete
    /// a frame are garbage (a corrupted length byte announcing a frame that
    /// never comes), so scan past them for frames already received behind
    /// them — e.g. a status reply while the monitor is not sampling.
    pub fn idle(&mut self, out: &mut Vec<StreamEvent>) {
        while self.frames.skip_stalled() {
            self.push(&[], out);
        }
        // Nothing follows the held packet for now: deliver it as it is.
        self.state.release(None, out);
    }

    /// End of input: trailing bytes of an incomplete frame count as garbage
    /// and a pending uncalibrated run is reported.
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        self.frames.clear();
        self.state.release(None, out);
        self.state.flush_uncalibrated(out);
    }

    /// Counters so far.
    pub fn stats(&self) -> DecodeStats {
        let mut s = self.state.stats;
        s.frames = self.frames.stats();
        s.next_index = self.state.next_index;
        s
    }

    /// Index the next decoded sample will get.
    pub fn next_index(&self) -> u64 {
        self.state.next_index
    }

    /// Bytes buffered but not yet decodable.
    pub fn pending_bytes(&self) -> usize {
        self.frames.pending()
    }

    /// Stream offset of the next undecoded byte.
    pub fn offset(&self) -> u64 {
        self.frames.offset()
    }
}

#[cfg(test)]
mod tests;

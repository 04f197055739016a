//! The soak's gateway calls: `slots` RTMP clients, each calling, again and again, a far-end
//! SIP user agent (bob) through the node; bob answers at once with PCMU and echoes every RTP
//! datagram. Every frame is accounted for, per call and in total: sent by the client, sent as
//! RTP by the node, lost on the way out, echoed, lost on the way back, delivered to the
//! node, and received by the client on `remote`, which must be exactly what was delivered,
//! in the order it was delivered, byte for byte.
//!
//! A call: connect to `sip/s<slot>n<session>@10.0.0.1` (a fresh address of record each time,
//! so that whatever the node keeps per client must go when the client goes), two
//! `createStream`s, `invite`, and on `accepted` publish `local`, play `remote` and send a
//! 20 ms PCMU frame until the talk time is up. Then the client goes quiet for longer than
//! anything can be in flight (so every echo is home before the hangup), the ledger is
//! closed, and the call ends one of three ways in turn: the client's `bye`, bob's BYE, or
//! the client simply disconnecting. The next session starts after a pause.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use siprtmp_core::amf::Value;
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::sdp::offer_answer::answer;
use siprtmp_core::sdp::{Codec, LocalCapabilities, MediaCapability, Origin, SessionDescription};
use siprtmp_core::sip::ua::{CallId, UaConfig, UaEvent, UserAgent};
use siprtmp_core::sip::Uri;

use super::net::{Net, Owner};
use super::wire::ConnRef;
use super::Failures;

/// Bob's SIP address.
pub(crate) const FAR_SIP: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)),
    5060,
);
/// Bob's RTP address (RTCP would go to the next port; bob ignores it).
pub(crate) const FAR_RTP: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)),
    6000,
);

/// A frame's RTP payload: its slot, session and index (4 bytes each), then this many bytes
/// of a fixed pattern (160 bytes in all: 20 ms of G.711).
const FILLER: usize = 148;

/// Where a slot is in its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between sessions.
    Idle,
    /// Connected at the TCP level, waiting for `connect`'s answer.
    Connecting,
    /// `invite` sent, waiting for `accepted`.
    Inviting,
    /// Sending a frame every 20 ms.
    Talking,
    /// Media stopped; waiting for the echoes in flight.
    Quiet,
    /// Hanging up, waiting for the call to end at both sides.
    HangingUp,
    /// Every session over (the run is winding down).
    Done,
}

/// How a call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The client calls `bye`; bob sees the call end; the client disconnects.
    ClientBye,
    /// Bob hangs up; the client hears `byed` and disconnects.
    FarBye,
    /// The client disconnects in the middle of the call; the node hangs up for it.
    Disconnect,
}

/// One session's frames.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameLedger {
    /// Frames the client sent on `local`.
    pub sent: u64,
    /// RTP datagrams the node sent to bob for them.
    pub rtp_out: u64,
    /// Of those, lost by the network.
    pub lost_out: u64,
    /// Delivered to bob and echoed.
    pub echoed: u64,
    /// Of the echoes, lost by the network.
    pub lost_back: u64,
    /// Echoes delivered to the node.
    pub delivered_back: u64,
    /// Of those, delivered behind a later one (reordered).
    pub reordered_back: u64,
    /// Frames the client received on `remote`.
    pub received: u64,
}

impl FrameLedger {
    fn add(&mut self, o: &FrameLedger) {
        self.sent += o.sent;
        self.rtp_out += o.rtp_out;
        self.lost_out += o.lost_out;
        self.echoed += o.echoed;
        self.lost_back += o.lost_back;
        self.delivered_back += o.delivered_back;
        self.reordered_back += o.reordered_back;
        self.received += o.received;
    }

    /// What does not add up, if anything: every frame sent went out as RTP, every datagram
    /// was lost or echoed, every echo lost or delivered, and every delivered echo received.
    pub(crate) fn imbalance(&self) -> Option<String> {
        let ok = self.rtp_out == self.sent
            && self.lost_out + self.echoed == self.rtp_out
            && self.lost_back + self.delivered_back == self.echoed
            && self.received == self.delivered_back;
        (!ok).then(|| format!("{self:?}"))
    }
}

/// Totals over every call.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CallTotals {
    /// Sessions started (client connected).
    pub started: u64,
    /// Sessions whose call was accepted.
    pub accepted: u64,
    /// Sessions over, by how they ended: client's bye, bob's BYE, disconnect.
    pub ended: [u64; 3],
    /// Frames of the sessions whose ledger is closed.
    pub frames: FrameLedger,
    /// Most calls talking at once.
    pub peak_talking: u64,
    /// SIP datagrams sent (both ways) and lost.
    pub sip_datagrams: u64,
    /// SIP datagrams the network lost.
    pub sip_lost: u64,
    /// RTCP datagrams the node sent to bob (who ignores them).
    pub rtcp_to_far: u64,
    /// RTP datagrams to or from bob that belong to no current session (none expected: the
    /// quiet time before each hangup lets every frame of a session arrive first).
    pub stray_rtp: u64,
}

#[derive(Debug)]
struct Slot {
    phase: Phase,
    /// Changes with every phase: agenda entries of an older one are stale.
    token: u32,
    session: u32,
    conn: Option<ConnRef>,
    far_call: Option<CallId>,
    ending: Ending,
    frames: FrameLedger,
    /// Frame indexes delivered to the node, in delivery order, not yet received.
    expected: VecDeque<u32>,
    /// Highest frame index delivered to the node so far (for counting reorders).
    highest_back: Option<u32>,
    talk_until: u64,
    /// The far side of the call is over (bob's Ended, or for `FarBye` the client's `byed`).
    far_done: bool,
}

/// The gateway calls and bob.
pub(crate) struct Calls {
    slots: Vec<Slot>,
    /// Slots talking, by the millisecond (mod 20) their frames go.
    phases: [Vec<u32>; 20],
    /// (when, slot, token): the slot's next step.
    agenda: BinaryHeap<Reverse<(u64, u32, u32)>>,
    far: UserAgent,
    far_calls: HashMap<CallId, u32>,
    rng: SeededRng,
    next_session: u32,
    talk: (u64, u64),
    pause: (u64, u64),
    quiet: u64,
    winding_down: bool,
    template: Bytes,
    talking: u64,
    /// Totals.
    pub totals: CallTotals,
}

/// How long a step may take before the session counts as stuck: SIP's 32 s transaction
/// timeout and then some.
const STEP_DEADLINE_MS: u64 = 45_000;

impl Calls {
    /// `slots` call slots; each starts within `ramp`, talks for a time in `talk` and pauses for
    /// one in `pause` between sessions. `max_flight_ms` is the longest anything takes to
    /// cross the network (the quiet time before a hangup is twice a round trip of it).
    pub(crate) fn new(
        slots: u32,
        talk: (Duration, Duration),
        pause: (Duration, Duration),
        ramp: Duration,
        max_flight_ms: u64,
        seed: u64,
    ) -> Self {
        let mut rng = SeededRng::new(seed);
        let far = UserAgent::new(
            UaConfig::new("sip:bob@10.0.0.2".parse().unwrap(), FAR_SIP),
            rng.next_u64(),
        );
        let mut agenda = BinaryHeap::new();
        let ramp_ms = ramp.as_millis() as u64;
        for slot in 0..slots {
            let at = 1 + rng.below(ramp_ms.max(1));
            agenda.push(Reverse((at, slot, 0)));
        }
        let filler: Vec<u8> = (0..FILLER).map(|i| (i * 7 + 3) as u8).collect();
        Self {
            slots: (0..slots)
                .map(|_| Slot {
                    phase: Phase::Idle,
                    token: 0,
                    session: 0,
                    conn: None,
                    far_call: None,
                    ending: Ending::ClientBye,
                    frames: FrameLedger::default(),
                    expected: VecDeque::new(),
                    highest_back: None,
                    talk_until: 0,
                    far_done: false,
                })
                .collect(),
            phases: Default::default(),
            agenda,
            far,
            far_calls: HashMap::new(),
            rng,
            next_session: 1,
            talk: (ms(talk.0), ms(talk.1)),
            pause: (ms(pause.0), ms(pause.1)),
            quiet: 4 * max_flight_ms + 20,
            winding_down: false,
            template: Bytes::from(filler),
            talking: 0,
            totals: CallTotals::default(),
        }
    }

    /// Calls bob still holds (after the run: none).
    pub(crate) fn far_calls(&self) -> usize {
        self.far.call_count()
    }

    /// Whether every slot is done (after [`Calls::wind_down`]).
    pub(crate) fn all_done(&self) -> bool {
        self.slots.iter().all(|s| s.phase == Phase::Done)
    }

    /// The slots not done, with their state (the first few).
    pub(crate) fn pending(&self) -> String {
        let list: Vec<String> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.phase != Phase::Done)
            .take(5)
            .map(|(i, s)| {
                format!(
                    "slot {i} session {} {:?} {:?} far done {}",
                    s.session, s.phase, s.ending, s.far_done
                )
            })
            .collect();
        list.join("; ")
    }

    /// No new sessions; talking calls stop now and hang up as usual.
    pub(crate) fn wind_down(&mut self, net: &mut Net) {
        self.winding_down = true;
        for slot in 0..self.slots.len() as u32 {
            let s = &mut self.slots[slot as usize];
            match s.phase {
                Phase::Idle => {
                    self.set_phase(slot, Phase::Done);
                }
                Phase::Talking => s.talk_until = net.now_ms,
                _ => {}
            }
        }
    }

    fn set_phase(&mut self, slot: u32, phase: Phase) -> u32 {
        let s = &mut self.slots[slot as usize];
        if s.phase == Phase::Talking {
            self.talking -= 1;
        }
        if phase == Phase::Talking {
            self.talking += 1;
            self.totals.peak_talking = self.totals.peak_talking.max(self.talking);
        }
        s.phase = phase;
        s.token = s.token.wrapping_add(1);
        s.token
    }

    fn wake(&mut self, at: u64, slot: u32) {
        let token = self.slots[slot as usize].token;
        self.agenda.push(Reverse((at, slot, token)));
    }

    /// One millisecond of scripted work: due steps, and the frames of this millisecond's
    /// talkers.
    pub(crate) fn tick(&mut self, net: &mut Net, failures: &mut Failures) {
        let now = net.now_ms;
        while let Some(&Reverse((at, slot, token))) = self.agenda.peek() {
            if at > now {
                break;
            }
            self.agenda.pop();
            if self.slots[slot as usize].token == token {
                self.step(net, slot, failures);
            }
        }
        let bucket = (now % 20) as usize;
        let mut i = 0;
        while i < self.phases[bucket].len() {
            let slot = self.phases[bucket][i];
            if self.slots[slot as usize].phase != Phase::Talking {
                self.phases[bucket].swap_remove(i);
                continue;
            }
            i += 1;
            if now >= self.slots[slot as usize].talk_until {
                let until = now + self.quiet;
                self.set_phase(slot, Phase::Quiet);
                self.wake(until, slot);
                continue;
            }
            self.send_frame(net, slot);
        }
    }

    fn send_frame(&mut self, net: &mut Net, slot: u32) {
        let s = &mut self.slots[slot as usize];
        let index = s.frames.sent as u32;
        s.frames.sent += 1;
        let mut body = Vec::with_capacity(1 + 12 + FILLER);
        body.push(0x82);
        body.extend_from_slice(&slot.to_be_bytes());
        body.extend_from_slice(&s.session.to_be_bytes());
        body.extend_from_slice(&index.to_be_bytes());
        body.extend_from_slice(&self.template);
        let msg = RtmpMessage::new(type_id::AUDIO, 1, index.wrapping_mul(20), body);
        let conn = s.conn.expect("talking on a connection");
        net.client(conn).send_media(&msg);
        net.flush_client(conn);
    }

    /// A due step of `slot` (its agenda entry is current).
    fn step(&mut self, net: &mut Net, slot: u32, failures: &mut Failures) {
        let phase = self.slots[slot as usize].phase;
        match phase {
            Phase::Idle => {
                if self.winding_down {
                    self.set_phase(slot, Phase::Done);
                    return;
                }
                let session = self.next_session;
                self.next_session += 1;
                let conn = net.connect(
                    &format!("sip/s{slot}n{session}@10.0.0.1"),
                    Owner::Call(slot),
                );
                let s = &mut self.slots[slot as usize];
                s.session = session;
                s.conn = Some(conn);
                s.far_call = None;
                s.frames = FrameLedger::default();
                s.expected.clear();
                s.highest_back = None;
                s.far_done = false;
                s.ending = match session % 3 {
                    0 => Ending::ClientBye,
                    1 => Ending::FarBye,
                    _ => Ending::Disconnect,
                };
                self.totals.started += 1;
                self.set_phase(slot, Phase::Connecting);
                self.wake(net.now_ms + STEP_DEADLINE_MS, slot);
            }
            Phase::Quiet => self.hang_up(net, slot, failures),
            Phase::Connecting | Phase::Inviting | Phase::HangingUp | Phase::Talking => {
                let s = &self.slots[slot as usize];
                failures.note(format!(
                    "call slot {slot} session {}: stuck in {phase:?} ({:?}, far done {})",
                    s.session, s.ending, s.far_done
                ));
                self.abandon(net, slot);
            }
            Phase::Done => {}
        }
    }

    /// The quiet time is over: every echo is home. Close the ledger, then hang up.
    fn hang_up(&mut self, net: &mut Net, slot: u32, failures: &mut Failures) {
        let s = &mut self.slots[slot as usize];
        if let Some(problem) = s.frames.imbalance() {
            failures.note(format!(
                "call session {}: frames do not add up: {problem}",
                s.session
            ));
        }
        if !s.expected.is_empty() {
            failures.note(format!(
                "call session {}: {} echoes delivered to the node never reached the client",
                s.session,
                s.expected.len()
            ));
        }
        self.totals.frames.add(&s.frames);
        let conn = s.conn.expect("a call has a connection");
        let far_call = s.far_call;
        match s.ending {
            Ending::ClientBye => net.client(conn).call(0, "bye", vec![]),
            Ending::FarBye => {
                let now = net.now();
                let call = far_call.expect("bob knows the call");
                if let Err(e) = self.far.hangup(now, call) {
                    failures.note(format!("bob cannot hang up: {e:?}"));
                }
                self.far_calls.remove(&call);
                self.far_events(net, failures);
                self.far_transmit(net);
            }
            Ending::Disconnect => {
                net.close(conn);
                self.slots[slot as usize].conn = None;
            }
        }
        net.flush_client(conn);
        self.set_phase(slot, Phase::HangingUp);
        self.wake(net.now_ms + STEP_DEADLINE_MS, slot);
    }

    /// Ends the session whatever state it is in (after a failure).
    fn abandon(&mut self, net: &mut Net, slot: u32) {
        let s = &mut self.slots[slot as usize];
        if let Some(conn) = s.conn.take() {
            net.close(conn);
        }
        if let Some(call) = s.far_call.take() {
            self.far_calls.remove(&call);
        }
        self.rest(net, slot);
    }

    /// The session is over: pause, then the next.
    fn rest(&mut self, net: &mut Net, slot: u32) {
        self.set_phase(slot, Phase::Idle);
        let pause = self.pause.0 + self.rng.below(self.pause.1 - self.pause.0 + 1);
        self.wake(net.now_ms + pause, slot);
    }

    /// The session ends once both sides are done.
    fn maybe_over(&mut self, net: &mut Net, slot: u32) {
        let s = &mut self.slots[slot as usize];
        if s.phase != Phase::HangingUp || !s.far_done {
            return;
        }
        if let Some(conn) = s.conn.take() {
            net.close(conn);
        }
        self.totals.ended[s.ending as usize] += 1;
        self.rest(net, slot);
    }

    /// What the client of `slot` heard.
    pub(crate) fn client_event(
        &mut self,
        net: &mut Net,
        slot: u32,
        event: ClientEvent,
        failures: &mut Failures,
    ) {
        let s = &mut self.slots[slot as usize];
        let Some(conn) = s.conn else { return };
        match event {
            ClientEvent::Connected if s.phase == Phase::Connecting => {
                let client = net.client(conn);
                client.create_stream();
                client.create_stream();
                let args = vec![Value::string("bob@10.0.0.2:5060"), Value::string("pcmu")];
                client.call(0, "invite", args);
                net.flush_client(conn);
                self.set_phase(slot, Phase::Inviting);
                self.wake(net.now_ms + STEP_DEADLINE_MS, slot);
            }
            ClientEvent::Command(cmd) => match cmd.name.as_str() {
                "accepted" if s.phase == Phase::Inviting => {
                    let client = net.client(conn);
                    client.publish(1, "local");
                    client.play(2, "remote", -2.0);
                    net.flush_client(conn);
                    let talk = self.talk.0 + self.rng.below(self.talk.1 - self.talk.0 + 1);
                    // A call that starts in the wind-down only says hello.
                    s.talk_until = net.now_ms + if self.winding_down { 1000 } else { talk };
                    self.totals.accepted += 1;
                    self.set_phase(slot, Phase::Talking);
                    self.phases[((net.now_ms + 1) % 20) as usize].push(slot);
                }
                "byed" if s.phase == Phase::HangingUp && s.ending == Ending::FarBye => {
                    s.far_done = true;
                    self.maybe_over(net, slot);
                }
                // The gateway's answers and other callbacks (`_result` of the `invite`,
                // `ringing`) need nothing; what would end or refuse the call is a failure.
                other @ ("rejected" | "cancelled" | "byed" | "invited" | "_error" | "accepted") => {
                    failures.note(format!(
                        "call session {} in {:?}: unexpected `{other}` {:?}",
                        s.session, s.phase, cmd.args
                    ));
                    self.abandon(net, slot);
                }
                _ => {}
            },
            ClientEvent::Media(m) if m.type_id == type_id::AUDIO && m.stream_id == 2 => {
                self.echo_received(slot, &m.payload, failures);
            }
            ClientEvent::ConnectRejected(code) => {
                failures.note(format!(
                    "call session {}: connect rejected: {code}",
                    s.session
                ));
                self.abandon(net, slot);
            }
            _ => {}
        }
    }

    /// A frame on `remote`: the next one delivered to the node, byte for byte.
    fn echo_received(&mut self, slot: u32, payload: &[u8], failures: &mut Failures) {
        let s = &mut self.slots[slot as usize];
        s.frames.received += 1;
        let expected = s.expected.pop_front();
        let got = parse_frame(payload.get(1..).unwrap_or(&[]));
        let whole = payload.len() == 1 + 12 + FILLER && payload[13..] == self.template[..];
        if got != expected.map(|i| (slot, s.session, i)) || !whole {
            failures.note(format!(
                "call session {}: received {got:?} ({} bytes) where frame {expected:?} was due",
                s.session,
                payload.len()
            ));
        }
    }

    /// The node's client of `slot` lost its connection (the node closed it).
    pub(crate) fn connection_lost(&mut self, net: &mut Net, slot: u32, failures: &mut Failures) {
        let s = &self.slots[slot as usize];
        failures.note(format!(
            "call session {}: the node closed the connection in {:?}",
            s.session, s.phase
        ));
        self.abandon(net, slot);
    }

    /// A datagram the node sent: accounted for, then onto the wire (or to nobody).
    pub(crate) fn node_sent(
        &mut self,
        net: &mut Net,
        from: SocketAddr,
        to: SocketAddr,
        data: Bytes,
    ) {
        if to == FAR_RTP {
            let slot = self.slot_of(&data);
            match slot {
                Some(slot) => self.slots[slot as usize].frames.rtp_out += 1,
                None => self.totals.stray_rtp += 1,
            }
            let now = net.now_ms;
            if !net.wire.udp(now, from, to, data) {
                if let Some(slot) = slot {
                    self.slots[slot as usize].frames.lost_out += 1;
                }
            }
        } else if to.ip() == FAR_RTP.ip() && to.port() == FAR_RTP.port() + 1 {
            self.totals.rtcp_to_far += 1;
        } else {
            self.totals.sip_datagrams += 1;
            let now = net.now_ms;
            if !net.wire.udp(now, from, to, data) {
                self.totals.sip_lost += 1;
            }
        }
    }

    /// A datagram reached bob (SIP) or his echo (RTP).
    pub(crate) fn far_received(
        &mut self,
        net: &mut Net,
        from: SocketAddr,
        to: SocketAddr,
        data: Bytes,
        failures: &mut Failures,
    ) {
        if to == FAR_RTP {
            let slot = self.slot_of(&data);
            match slot {
                Some(slot) => self.slots[slot as usize].frames.echoed += 1,
                None => self.totals.stray_rtp += 1,
            }
            let now = net.now_ms;
            if !net.wire.udp(now, FAR_RTP, from, data) {
                if let Some(slot) = slot {
                    self.slots[slot as usize].frames.lost_back += 1;
                }
            }
        } else if to == FAR_SIP {
            let now = net.now();
            self.far.handle_datagram(now, from, data);
            self.far_events(net, failures);
            self.far_transmit(net);
        }
    }

    /// A datagram from bob reached the node (already handed to the node by the caller when
    /// `bound`): an echo is accounted for.
    pub(crate) fn delivered_to_node(&mut self, from: SocketAddr, data: &[u8], bound: bool) {
        if from != FAR_RTP {
            return;
        }
        let Some(slot) = self.slot_of(data) else {
            self.totals.stray_rtp += 1;
            return;
        };
        let Some((_, _, index)) = parse_frame(&data[12..]) else {
            return;
        };
        let s = &mut self.slots[slot as usize];
        if bound {
            s.frames.delivered_back += 1;
            s.expected.push_back(index);
            if s.highest_back.is_some_and(|h| index < h) {
                s.frames.reordered_back += 1;
            }
            s.highest_back = Some(s.highest_back.map_or(index, |h| h.max(index)));
        }
    }

    /// Bob's timers.
    pub(crate) fn far_timers(&mut self, net: &mut Net, failures: &mut Failures) {
        let now = net.now();
        if self.far.poll_timeout().is_some_and(|t| t <= now) {
            self.far.handle_timeout(now);
            self.far_events(net, failures);
            self.far_transmit(net);
        }
    }

    fn far_transmit(&mut self, net: &mut Net) {
        let now = net.now_ms;
        while let Some((to, data)) = self.far.poll_transmit() {
            self.totals.sip_datagrams += 1;
            if !net.wire.udp(now, FAR_SIP, to, data) {
                self.totals.sip_lost += 1;
            }
        }
    }

    fn far_events(&mut self, net: &mut Net, failures: &mut Failures) {
        let now = net.now();
        while let Some(event) = self.far.poll_event() {
            match event {
                UaEvent::IncomingCall {
                    call, from, offer, ..
                } => {
                    let slot = match &from.uri {
                        Uri::Sip(uri) => uri.user.as_deref().and_then(parse_user),
                        Uri::Other(_) => None,
                    }
                    .filter(|&(slot, session)| {
                        self.slots
                            .get(slot as usize)
                            .is_some_and(|s| s.session == session && s.phase == Phase::Inviting)
                    });
                    let Some((slot, _)) = slot else {
                        failures.note(format!("bob: a call from an unknown caller {from:?}"));
                        let _ = self.far.reject(now, call, 404, "Not Found");
                        continue;
                    };
                    let sdp = offer
                        .as_deref()
                        .and_then(|o| SessionDescription::parse(o).ok());
                    let Some(answer) = sdp.and_then(|offer| bob_answer(&offer)) else {
                        failures.note(format!("bob: no answer to the offer of slot {slot}"));
                        let _ = self.far.reject(now, call, 488, "Not Acceptable Here");
                        continue;
                    };
                    self.slots[slot as usize].far_call = Some(call);
                    self.far_calls.insert(call, slot);
                    let ringing = self.far.ringing(now, call);
                    let answered = self.far.answer(now, call, answer);
                    if let Err(e) = ringing.and(answered) {
                        failures.note(format!("bob cannot answer slot {slot}: {e:?}"));
                    }
                }
                UaEvent::Ended { call } => {
                    let Some(slot) = self.far_calls.remove(&call) else {
                        continue;
                    };
                    let s = &mut self.slots[slot as usize];
                    if s.phase == Phase::HangingUp && s.ending != Ending::FarBye {
                        s.far_done = true;
                        s.far_call = None;
                        self.maybe_over(net, slot);
                    } else {
                        failures.note(format!(
                            "call session {}: bob's call ended in {:?} ({:?})",
                            s.session, s.phase, s.ending
                        ));
                    }
                }
                _ => {}
            }
        }
    }

    /// The slot whose current session an RTP datagram (12-byte header) belongs to. Only a
    /// current session's frames are still moving: the quiet time before each hangup sees
    /// to that.
    fn slot_of(&self, datagram: &[u8]) -> Option<u32> {
        let (slot, session, _) = parse_frame(datagram.get(12..)?)?;
        let s = self.slots.get(slot as usize)?;
        (s.session == session).then_some(slot)
    }
}

/// (slot, session, frame index) from a frame's RTP payload.
fn parse_frame(payload: &[u8]) -> Option<(u32, u32, u32)> {
    let word = |i: usize| Some(u32::from_be_bytes(payload.get(i..i + 4)?.try_into().ok()?));
    Some((word(0)?, word(4)?, word(8)?))
}

/// (slot, session) from a caller's user part `s<slot>n<session>`.
fn parse_user(user: &str) -> Option<(u32, u32)> {
    let (slot, session) = user.strip_prefix('s')?.split_once('n')?;
    Some((slot.parse().ok()?, session.parse().ok()?))
}

/// Bob's answer: PCMU and telephone-events, media at [`FAR_RTP`].
fn bob_answer(offer: &SessionDescription) -> Option<Bytes> {
    let caps = LocalCapabilities {
        address: FAR_RTP.ip(),
        session_name: "bob".into(),
        media: vec![MediaCapability::new(
            "audio",
            FAR_RTP.port(),
            vec![
                Codec::new(0, "PCMU", 8000, None),
                Codec::new(101, "telephone-event", 8000, None),
            ],
        )],
    };
    let origin = Origin {
        username: "-".into(),
        session_id: 1,
        session_version: 1,
        nettype: "IN".into(),
        addrtype: "IP4".into(),
        address: "10.0.0.2".into(),
    };
    let ans = answer(offer, &caps, &origin).ok()?;
    Some(Bytes::from(ans.serialize()))
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

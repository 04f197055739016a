//! Seed corpora for the fuzz targets, from real data: FLV files that ffmpeg made, the bytes of
//! an ffmpeg publish to the release server captured by [`proxy`], and the SIP messages of a
//! sipp call (`-trace_msg`). `fuzz/seeds/generate.sh` makes those and runs this; it is not
//! part of a fuzz run.
//!
//! ```text
//! seedgen proxy LISTEN_ADDR UPSTREAM_ADDR OUT_PREFIX   # records OUT_PREFIX.c2s / .s2c
//! seedgen corpus INPUT_DIR CORPUS_DIR                  # writes CORPUS_DIR/<target>/<name>
//! ```
//!
//! INPUT_DIR holds `av.flv` (H.264 + AAC), `speex.flv` (Speex), `pcmu.flv` (G.711 mu-law),
//! `publish.c2s` / `publish.s2c` (the captured session) and `sip.log` (sipp's messages).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use siprtmp_core::amf::{amf0, amf3};
use siprtmp_core::flv::reader::{FlvReader, FlvTag};
use siprtmp_core::flv::tag::tag_type;
use siprtmp_core::media::h264_packetizer::{H264Packetizer, H264PacketizerConfig};
use siprtmp_core::media::FlvTunnelSender;
use siprtmp_core::rtmp::chunk_decoder::{ChunkDecoder, ChunkLimits};
use siprtmp_core::rtmp::control::ProtocolControl;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::rtp::dtmf::encode_digit;
use siprtmp_core::rtp::rtcp::{
    serialize_compound, Goodbye, ReceiverReport, ReportBlock, RtcpPacket, SdesChunk, SdesItem,
    SenderReport, SDES_CNAME,
};
use siprtmp_core::rtp::RtpPacket;
use siprtmp_core::sdp::{create_offer, Codec, LocalCapabilities, MediaCapability, Origin};
use siprtmp_core::sip::{
    parse_datagram, Algorithm, Authorization, Challenge, Credentials, DigestRequest,
};
use siprtmp_fuzz::frames::join;
use siprtmp_fuzz::node_ops::{App, Command, Data, Encoder, FileAnswer, MediaKind, Op, Peer, Setup};

const HANDSHAKE: usize = 1 + 1536 + 1536;
/// The largest seed written (libFuzzer's -max_len follows the largest seed).
const MAX_SEED: usize = 48 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("proxy") if args.len() == 4 => proxy(&args[1], &args[2], &args[3]),
        Some("corpus") if args.len() == 3 => corpus(Path::new(&args[1]), Path::new(&args[2])),
        _ => {
            eprintln!("usage: seedgen proxy LISTEN UPSTREAM OUT_PREFIX | seedgen corpus IN OUT");
            std::process::exit(2);
        }
    }
}

/// Forwards one TCP connection to `upstream`, recording each direction to a file; returns
/// when both directions are closed. `OUT_PREFIX.ready` appears once it listens.
fn proxy(listen: &str, upstream: &str, out: &str) {
    let listener = TcpListener::bind(listen).expect("bind");
    std::fs::write(format!("{out}.ready"), b"").expect("ready file");
    let (client, _) = listener.accept().expect("accept");
    let server = TcpStream::connect(upstream).expect("connect upstream");
    let pump = |mut from: TcpStream, mut to: TcpStream, path: String| {
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(path).expect("create capture");
            let mut buf = [0u8; 16384];
            from.set_read_timeout(Some(Duration::from_secs(60))).ok();
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        file.write_all(&buf[..n]).expect("write capture");
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        })
    };
    let a = pump(
        client.try_clone().unwrap(),
        server.try_clone().unwrap(),
        format!("{out}.c2s"),
    );
    let b = pump(server, client, format!("{out}.s2c"));
    a.join().unwrap();
    b.join().unwrap();
}

/// Writes seeds, named by content so that reruns do not duplicate them.
struct Out {
    dir: PathBuf,
    count: usize,
}

impl Out {
    fn put(&mut self, target: &str, data: &[u8]) {
        if data.is_empty() || data.len() > MAX_SEED {
            return;
        }
        let dir = self.dir.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        // FNV-1a, enough to name a few hundred files.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in data {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        std::fs::write(dir.join(format!("seed-{h:016x}")), data).unwrap();
        self.count += 1;
    }
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn flv_tags(file: &[u8]) -> Vec<FlvTag> {
    let mut reader = FlvReader::new(1 << 24);
    reader.push(file);
    let mut tags = Vec::new();
    while let Ok(Some(tag)) = reader.next_tag() {
        tags.push(tag);
    }
    tags
}

/// The messages of a captured chunk stream (after the handshake).
fn rtmp_messages(stream: &[u8]) -> Vec<RtmpMessage> {
    let mut decoder = ChunkDecoder::new(ChunkLimits::default());
    let mut buf = BytesMut::from(stream);
    let mut out = Vec::new();
    while let Ok(Some(msg)) = decoder.decode(&mut buf) {
        if let Ok(ProtocolControl::SetChunkSize(size)) = ProtocolControl::parse(&msg) {
            let _ = decoder.set_chunk_size(size);
        }
        out.push(msg);
    }
    out
}

/// The messages of sipp's `-message_file` log: each follows a line saying it was sent or
/// received, and ends at the next separator line.
fn sip_messages(log: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in log.lines() {
        let separator = line.starts_with("----------");
        let header = line.contains("message sent") || line.contains("message received");
        if separator || header {
            if let Some(m) = current.take() {
                let m = m.trim_start_matches(['\r', '\n']).to_string();
                if !m.trim().is_empty() {
                    out.push(m.into_bytes());
                }
            }
            if header {
                current = Some(String::new());
            }
            continue;
        }
        if let Some(m) = &mut current {
            m.push_str(line.trim_end_matches('\r'));
            m.push_str("\r\n");
        }
    }
    if let Some(m) = current {
        out.push(m.into_bytes());
    }
    // A message ends with its blank line (and body, if any): trim what sipp adds after.
    out.into_iter()
        .map(|m| {
            let text = String::from_utf8_lossy(&m).trim().to_string();
            let mut text = text.replace("\r\n", "\n").replace('\n', "\r\n");
            if !text.contains("\r\n\r\n") {
                text.push_str("\r\n");
            }
            text.push_str("\r\n");
            text.into_bytes()
        })
        .filter(|m| parse_datagram(m).is_ok())
        .collect()
}

fn rtp(pt: u8, seq: u16, ts: u32, marker: bool, payload: Bytes) -> Vec<u8> {
    let mut p = RtpPacket::new(pt, seq, ts, 0x1234_5678, payload);
    p.marker = marker;
    p.serialize().unwrap().to_vec()
}

fn corpus(input: &Path, out_dir: &Path) {
    let mut out = Out {
        dir: out_dir.to_path_buf(),
        count: 0,
    };
    let av = read(input, "av.flv");
    let speex = read(input, "speex.flv");
    let pcmu = read(input, "pcmu.flv");
    let c2s = read(input, "publish.c2s");
    let s2c = read(input, "publish.s2c");
    let sip_log = String::from_utf8_lossy(&read(input, "sip.log")).into_owned();
    let av_tags = flv_tags(&av);
    let speex_tags = flv_tags(&speex);
    let pcmu_tags = flv_tags(&pcmu);
    assert!(!av_tags.is_empty() && !speex_tags.is_empty() && !pcmu_tags.is_empty());
    assert!(
        c2s.len() > HANDSHAKE && s2c.len() > HANDSHAKE,
        "capture too short"
    );

    // FLV files: the reader, the scanner (a few read sizes / body limits each).
    for file in [&av, &speex, &pcmu] {
        let cut = &file[..file.len().min(MAX_SEED - 1)];
        for mode in [0u8, 13, 255] {
            let mut seed = vec![mode];
            seed.extend_from_slice(cut);
            out.put("flv_reader", &seed);
            out.put("flv_index", &seed);
        }
    }
    // Script tags: metadata and AMF0; the same values in AMF3.
    for tag in av_tags.iter().filter(|t| t.tag_type == tag_type::SCRIPT) {
        out.put("flv_metadata", &tag.body);
        out.put("amf0", &tag.body);
        if let Ok(values) = amf0::decode_all(&tag.body) {
            out.put("amf3", &amf3::encode_all(&values));
        }
    }
    // The AVC sequence header's record.
    for tag in av_tags.iter().filter(|t| t.tag_type == tag_type::VIDEO) {
        if tag.body.len() > 5 && tag.body[1] == 0 {
            out.put("avc_config", &tag.body[5..]);
        }
    }
    // Speex packets (the FLV body after its one-byte header).
    for tag in speex_tags
        .iter()
        .filter(|t| t.tag_type == tag_type::AUDIO)
        .take(20)
    {
        out.put("speex", &tag.body[1..]);
    }

    // The captured RTMP session: handshakes, chunk streams, messages, commands.
    for mode in [0u8, 5, 0x7f] {
        let mut seed = vec![mode];
        seed.extend_from_slice(&c2s[..HANDSHAKE]);
        out.put("rtmp_handshake", &seed);
        let mut seed = vec![0x80 | mode];
        seed.extend_from_slice(&s2c[..HANDSHAKE]);
        out.put("rtmp_handshake", &seed);
    }
    for (stream, modes) in [
        (&c2s[HANDSHAKE..], [0u8, 200]),
        (&s2c[HANDSHAKE..], [3, 255]),
    ] {
        for mode in modes {
            let mut seed = vec![mode];
            seed.extend_from_slice(&stream[..stream.len().min(MAX_SEED - 1)]);
            out.put("rtmp_chunk", &seed);
        }
    }
    let mut seen_types = BTreeSet::new();
    for msg in rtmp_messages(&c2s[HANDSHAKE..])
        .into_iter()
        .chain(rtmp_messages(&s2c[HANDSHAKE..]))
    {
        let media = matches!(msg.type_id, type_id::AUDIO | type_id::VIDEO);
        // Every non-media message; media only a couple of each type.
        if media && !seen_types.insert((msg.type_id, msg.payload.first().copied())) {
            continue;
        }
        let mut seed = vec![msg.type_id];
        seed.extend_from_slice(&msg.payload);
        out.put("rtmp_messages", &seed);
        if matches!(msg.type_id, type_id::COMMAND_AMF0 | type_id::DATA_AMF0) {
            out.put("amf0", &msg.payload);
            if let Ok(values) = amf0::decode_all(&msg.payload) {
                out.put("amf3", &amf3::encode_all(&values));
            }
        }
    }
    // An aggregate of the first audio and video tags, as a server sends it.
    let mut aggregate = vec![type_id::AGGREGATE];
    for tag in av_tags
        .iter()
        .filter(|t| t.tag_type != tag_type::SCRIPT)
        .take(6)
    {
        aggregate.extend_from_slice(&siprtmp_core::flv::tag::encode_tag(
            tag.tag_type,
            tag.timestamp,
            &tag.body,
        ));
    }
    out.put("rtmp_messages", &aggregate);

    // RTP: H.264 packetized as the gateway does, the x-flv tunnel, G.711, DTMF, RTCP.
    let mut packetizer = H264Packetizer::new(
        H264PacketizerConfig {
            mtu: 1200,
            parameter_sets_every_keyframe: true,
        },
        0,
    );
    let mut h264_packets = Vec::new();
    let mut seq = 100u16;
    for tag in av_tags
        .iter()
        .filter(|t| t.tag_type == tag_type::VIDEO)
        .take(12)
    {
        let mut payloads = Vec::new();
        if packetizer
            .push(&tag.body, tag.timestamp, &mut payloads)
            .is_err()
        {
            continue;
        }
        for (i, p) in payloads.iter().enumerate() {
            seq = seq.wrapping_add(1);
            let wire = rtp(97, seq, p.timestamp, p.marker, p.to_bytes());
            // One byte of elapsed time before each packet (the target's layout).
            let mut with_time = vec![if i == 0 { 40 } else { 0 }];
            with_time.extend_from_slice(&wire);
            h264_packets.push(with_time);
            if h264_packets.len() < 8 {
                out.put("rtp_packet", &wire);
            }
        }
    }
    for chunk in h264_packets.chunks(24) {
        out.put("h264_depacketizer", &join(chunk.iter().map(Vec::as_slice)));
    }
    let tunnel = FlvTunnelSender::new(1000, 0);
    let mut tunnel_packets = Vec::new();
    for tag in av_tags
        .iter()
        .filter(|t| t.tag_type != tag_type::SCRIPT)
        .take(16)
    {
        let msg = RtmpMessage::new(tag.tag_type, 0, tag.timestamp, tag.body.clone());
        let mut payloads = Vec::new();
        if tunnel.push(&msg, &mut payloads).is_ok() {
            for p in payloads {
                seq = seq.wrapping_add(1);
                tunnel_packets.push(rtp(98, seq, p.timestamp, p.marker, p.to_bytes()));
            }
        }
    }
    for chunk in tunnel_packets.chunks(20) {
        out.put("flv_tunnel", &join(chunk.iter().map(Vec::as_slice)));
    }
    let mut pcmu_rtp = Vec::new();
    for (i, tag) in pcmu_tags
        .iter()
        .filter(|t| t.tag_type == tag_type::AUDIO)
        .take(4)
        .enumerate()
    {
        let wire = rtp(
            0,
            500 + i as u16,
            i as u32 * 160,
            i == 0,
            tag.body.slice(1..),
        );
        out.put("rtp_packet", &wire);
        pcmu_rtp.push(wire);
    }
    for digit in ['1', '#', 'D'] {
        let train = encode_digit(digit, Duration::from_millis(120), 10, 8000).unwrap();
        let packets: Vec<Vec<u8>> = train
            .iter()
            .map(|p| {
                let mut v = 8000u32.to_be_bytes().to_vec();
                v.extend_from_slice(&p.payload);
                v
            })
            .collect();
        out.put("dtmf", &join(packets.iter().map(Vec::as_slice)));
    }
    let block = ReportBlock {
        ssrc: 0x1234_5678,
        fraction_lost: 3,
        cumulative_lost: 12,
        highest_sequence: 70_000,
        jitter: 40,
        last_sr: 0x1111_2222,
        delay_since_last_sr: 6553,
    };
    let sdes = RtcpPacket::SourceDescription(vec![SdesChunk {
        ssrc: 0x0bad_cafe,
        items: vec![SdesItem {
            kind: SDES_CNAME,
            value: Bytes::from_static(b"siprtmp@10.0.0.1"),
        }],
    }]);
    let compounds = [
        vec![
            RtcpPacket::SenderReport(SenderReport {
                ssrc: 0x0bad_cafe,
                ntp_timestamp: 0xe000_0000_8000_0000,
                rtp_timestamp: 160_000,
                packet_count: 1000,
                octet_count: 160_000,
                reports: vec![block],
                profile_extension: Bytes::new(),
            }),
            sdes.clone(),
        ],
        vec![
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: 0x0bad_cafe,
                reports: vec![block],
                profile_extension: Bytes::new(),
            }),
            sdes,
            RtcpPacket::Goodbye(Goodbye {
                sources: vec![0x0bad_cafe],
                reason: Some(Bytes::from_static(b"call ended")),
            }),
        ],
    ];
    for c in &compounds {
        out.put("rtcp", &serialize_compound(c).unwrap());
    }

    // SIP: sipp's messages, their header values, their SDP; Digest as a registrar speaks it.
    let sip = sip_messages(&sip_log);
    assert!(!sip.is_empty(), "no SIP message in sip.log");
    for (i, m) in sip.iter().enumerate() {
        let mut seed = vec![i as u8 * 37];
        seed.extend_from_slice(m);
        out.put("sip_message", &seed);
        let msg = parse_datagram(m).unwrap();
        let h = msg.headers();
        let value = |k: u8, v: &str| {
            let mut s = vec![k];
            s.extend_from_slice(v.as_bytes());
            s
        };
        if let siprtmp_core::sip::SipMessage::Request(r) = &msg {
            out.put("sip_values", &value(0, &r.uri.to_string()));
        }
        for (k, name) in [
            (1u8, "From"),
            (1, "To"),
            (1, "Contact"),
            (2, "Via"),
            (6, "CSeq"),
        ] {
            for v in h.get_all(name) {
                out.put("sip_values", &value(k, v));
            }
        }
        if !msg.body().is_empty() {
            out.put("sdp", msg.body());
        }
    }
    let challenge = Challenge::new(
        "siprtmp.test",
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        Algorithm::Md5,
    );
    let mut seed = vec![4u8];
    seed.extend_from_slice(challenge.to_string().as_bytes());
    out.put("sip_values", &seed);
    let creds = Credentials::new("alice", "secret");
    let request = DigestRequest {
        method: "REGISTER",
        uri: "sip:siprtmp.test",
        body: b"",
    };
    if let Ok(auth) = Authorization::answer(&challenge, &creds, &request, "0a4f113b", 1) {
        let mut seed = vec![5u8];
        seed.extend_from_slice(auth.to_string().as_bytes());
        out.put("sip_values", &seed);
    }
    let caps = LocalCapabilities {
        address: "10.0.0.1".parse().unwrap(),
        session_name: "siprtmp".into(),
        media: vec![
            MediaCapability::new(
                "audio",
                20000,
                vec![
                    Codec::new(96, "speex", 16000, None),
                    Codec::new(0, "PCMU", 8000, None),
                    Codec::new(101, "telephone-event", 8000, None).with_param("0-15", None),
                ],
            ),
            MediaCapability::new("video", 20002, vec![Codec::new(97, "H264", 90000, None)]),
        ],
    };
    let origin = Origin {
        username: "-".into(),
        session_id: 1,
        session_version: 1,
        nettype: "IN".into(),
        addrtype: "IP4".into(),
        address: "10.0.0.1".into(),
    };
    out.put("sdp", create_offer(&caps, &origin).serialize().as_bytes());

    node_seeds(
        &mut out,
        &av,
        &av_tags,
        &c2s,
        &pcmu_tags,
        &pcmu_rtp,
        &h264_packets,
    );
    println!("wrote {} seeds to {}", out.count, out_dir.display());
}

/// Scripts for the whole node: the captured ffmpeg publish replayed, the harness's client
/// publishing the ffmpeg file to a player, the file played back from disk, a recording, and
/// gateway calls with real G.711 and H.264 RTP.
fn node_seeds(
    out: &mut Out,
    av: &[u8],
    av_tags: &[FlvTag],
    c2s: &[u8],
    pcmu_tags: &[FlvTag],
    pcmu_rtp: &[Vec<u8>],
    h264_packets: &[Vec<u8>],
) {
    let plain = Setup {
        gateway: false,
        shared_rtp_ports: false,
        merge_writes: false,
        decisions: false,
        record_all: false,
        wideband: false,
    };
    let media: Vec<&FlvTag> = av_tags.iter().take(40).collect();
    let kind = |t: &FlvTag| match t.tag_type {
        tag_type::AUDIO => MediaKind::Audio,
        tag_type::VIDEO => MediaKind::Video,
        _ => MediaKind::Data,
    };

    // 1. ffmpeg's own bytes after a valid handshake, a player watching.
    let mut e = Encoder::new(plain);
    e.op(Op::Open {
        handshake: true,
        app: App::Live,
    });
    e.op(Op::Command {
        conn: 0,
        command: Command::Play {
            stream: 1,
            name: 0,
            start: -1,
        },
    });
    e.op(Op::Open {
        handshake: true,
        app: App::None,
    });
    let session = &c2s[HANDSHAKE..];
    for piece in session[..session.len().min(MAX_SEED - 200)].chunks(8000) {
        e.op(Op::Receive {
            conn: 1,
            data: Data(piece),
        });
        e.op(Op::Advance { ms: 100 });
        e.op(Op::Drain { conn: 1, max: 0 });
    }
    out.put("node", &e.finish());

    // 2. The harness's client publishes the file's first tags; a second one plays (merged
    // writes in one variant, decisions in another).
    for setup in [
        plain,
        Setup {
            merge_writes: true,
            record_all: true,
            ..plain
        },
        Setup {
            decisions: true,
            ..plain
        },
    ] {
        let mut e = Encoder::new(setup);
        e.op(Op::Open {
            handshake: true,
            app: App::Live,
        });
        if setup.decisions {
            e.op(Op::Decide {
                which: 0,
                answer: siprtmp_fuzz::node_ops::Answer::Accept,
            });
        }
        e.op(Op::Command {
            conn: 0,
            command: Command::CreateStream,
        });
        e.op(Op::Command {
            conn: 0,
            command: Command::Publish { stream: 1, name: 1 },
        });
        e.op(Op::Open {
            handshake: true,
            app: App::Live,
        });
        e.op(Op::Command {
            conn: 1,
            command: Command::CreateStream,
        });
        e.op(Op::Command {
            conn: 1,
            command: Command::Play {
                stream: 1,
                name: 1,
                start: -2,
            },
        });
        let mut size = 0;
        for t in &media {
            size += t.body.len();
            if size > MAX_SEED / 2 {
                break;
            }
            e.op(Op::Media {
                conn: 0,
                kind: kind(t),
                stream: 1,
                timestamp: t.timestamp as u16,
                body: Data(&t.body),
            });
            e.op(Op::File {
                which: 0,
                answer: FileAnswer::Run,
            });
            e.op(Op::Advance { ms: 40 });
        }
        e.op(Op::Close { conn: 0 });
        out.put("node", &e.finish());
    }

    // 3. Video on demand of the ffmpeg file.
    let mut e = Encoder::new(plain);
    e.op(Op::PutFile {
        name: 0,
        data: Data(&av[..av.len().min(MAX_SEED - 400)]),
    });
    e.op(Op::Open {
        handshake: true,
        app: App::Vod,
    });
    e.op(Op::Command {
        conn: 0,
        command: Command::CreateStream,
    });
    e.op(Op::Command {
        conn: 0,
        command: Command::Play {
            stream: 1,
            name: 0,
            start: -2,
        },
    });
    for i in 0..40 {
        e.op(Op::File {
            which: 0,
            answer: FileAnswer::Run,
        });
        e.op(Op::Advance { ms: 50 });
        if i == 20 {
            e.op(Op::Command {
                conn: 0,
                command: Command::Seek { stream: 1, ms: 500 },
            });
        }
    }
    out.put("node", &e.finish());

    // 4. Gateway calls: out (the client invites bob) and in (bob calls the client), with the
    // client's audio and bob's RTP (G.711, then H.264 with wideband), DTMF, hold and bye.
    for (wideband, codec) in [(false, 0u8), (true, 4)] {
        for incoming in [false, true] {
            let mut e = Encoder::new(Setup {
                gateway: true,
                wideband,
                ..plain
            });
            e.op(Op::Open {
                handshake: true,
                app: App::Gateway { user: 0 },
            });
            e.op(Op::Command {
                conn: 0,
                command: Command::CreateStream,
            });
            e.op(Op::Command {
                conn: 0,
                command: Command::CreateStream,
            });
            if incoming {
                e.op(Op::FarCall { user: 0 });
                e.op(Op::Command {
                    conn: 0,
                    command: Command::Accept { codec },
                });
            } else {
                e.op(Op::Command {
                    conn: 0,
                    command: Command::Invite { codec },
                });
            }
            e.op(Op::Command {
                conn: 0,
                command: Command::Publish { stream: 1, name: 2 },
            });
            e.op(Op::Command {
                conn: 0,
                command: Command::Play {
                    stream: 2,
                    name: 3,
                    start: -2,
                },
            });
            for (i, t) in pcmu_tags
                .iter()
                .filter(|t| t.tag_type == tag_type::AUDIO)
                .take(4)
                .enumerate()
            {
                e.op(Op::Media {
                    conn: 0,
                    kind: MediaKind::Audio,
                    stream: 1,
                    timestamp: (i * 20) as u16,
                    body: Data(&t.body),
                });
                e.op(Op::Advance { ms: 20 });
            }
            // The sockets are bound in order: SIP, then audio RTP, RTCP, video RTP, RTCP.
            for p in pcmu_rtp {
                e.op(Op::Datagram {
                    socket: 1,
                    from: Peer::FarRtp,
                    data: Data(p),
                });
            }
            if wideband {
                for p in h264_packets.iter().take(10) {
                    e.op(Op::Datagram {
                        socket: 3,
                        from: Peer::FarVideo,
                        data: Data(&p[1..]),
                    });
                }
            }
            e.op(Op::Command {
                conn: 0,
                command: Command::Dtmf { digit: 11 },
            });
            e.op(Op::Advance { ms: 500 });
            e.op(Op::Command {
                conn: 0,
                command: Command::Hold { on: true },
            });
            e.op(Op::Advance { ms: 500 });
            e.op(Op::Command {
                conn: 0,
                command: Command::Bye,
            });
            e.op(Op::Advance { ms: 1000 });
            out.put("node", &e.finish());
        }
    }
}

//! # siprtmp-core
//!
//! The sans-IO protocol core of siprtmp: AMF0/AMF3, RTMP (handshake, chunk stream, messages),
//! FLV, SIP, SDP and RTP/RTCP as pure state machines, plus the live media server application
//! that ties them together behind one [`node::Node`] API.
//!
//! Nothing in this crate opens a socket, reads a clock, spawns a thread or touches the file
//! system. Bytes and time go in, actions come out; a driver (mio, tokio, threads, async-std, or
//! your own loop) moves them between the machine and the operating system.
//!
//! What a driver owes the node (drain `poll_output` before it waits, `Transmit` is
//! edge-triggered, `Close` is answered with `Closed`, time and timers, two-phase decisions) is
//! set out, with the crate's layers and data paths, in `ARCHITECTURE.md` at the root of the
//! repository.
//!
//! ## Embedding 1: your own loop over std sockets
//!
//! A driver is a loop that feeds the [`node::Node`] what happened and does what it asks. This
//! one serves a client (here the crate's own [`rtmp::client::RtmpClient`] on a second socket)
//! with non-blocking std sockets, and stops once the client is connected:
//!
//! ```
//! use std::io::{ErrorKind, IoSlice, Read, Write};
//! use std::net::{TcpListener, TcpStream};
//! use std::time::{Duration, Instant};
//! use bytes::BytesMut;
//! use siprtmp_core::node::{Input, Node, NodeConfig, Output};
//! use siprtmp_core::rng::SeededRng;
//! use siprtmp_core::rtmp::client::{ClientEvent, RtmpClient};
//!
//! let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//! listener.set_nonblocking(true).unwrap();
//! let addr = listener.local_addr().unwrap();
//! let mut node = Node::new(NodeConfig::default(), Instant::now(), 42);
//! let mut conns = Vec::new(); // (ConnId, TcpStream)
//!
//! // The client side, also sans-IO, on a blocking-free socket of its own.
//! let mut client_socket = TcpStream::connect(addr).unwrap();
//! client_socket.set_nonblocking(true).unwrap();
//! let mut client = RtmpClient::new(&mut SeededRng::new(1), "live", &format!("rtmp://{addr}/live"));
//! let (mut client_in, mut connected) = (BytesMut::new(), false);
//!
//! // Until the client is connected (a generous bound: a loaded machine may take a while).
//! let deadline = Instant::now() + Duration::from_secs(30);
//! while Instant::now() < deadline {
//!     let now = Instant::now();
//!     if let Ok((socket, peer)) = listener.accept() {
//!         socket.set_nonblocking(true).unwrap();
//!         conns.push((node.accept(now, peer), socket));
//!     }
//!     for (conn, socket) in &mut conns {
//!         let mut buf = [0u8; 4096];
//!         match socket.read(&mut buf) {
//!             Ok(0) => node.handle(now, Input::Closed { conn: *conn }),
//!             Ok(n) => node.handle(now, Input::Received { conn: *conn, data: BytesMut::from(&buf[..n]) }),
//!             Err(e) if e.kind() == ErrorKind::WouldBlock => {}
//!             Err(_) => node.handle(now, Input::Closed { conn: *conn }),
//!         }
//!     }
//!     if node.poll_timeout().is_some_and(|t| t <= now) {
//!         node.handle(now, Input::Timeout);
//!     }
//!     while let Some(output) = node.poll_output() {
//!         if let Output::Event(event) = output {
//!             println!("{event:?}");
//!         }
//!     }
//!     // One vectored write per connection per turn; the node learns what the kernel took.
//!     for (conn, socket) in &mut conns {
//!         let mut slices = [IoSlice::new(&[]); 32];
//!         let n = node.io_slices(*conn, &mut slices);
//!         if n > 0 {
//!             if let Ok(bytes) = socket.write_vectored(&slices[..n]) {
//!                 node.handle(now, Input::Drained { conn: *conn, bytes });
//!             }
//!         }
//!     }
//!     // The client: send what it queued, feed it what arrived.
//!     while let Some(bytes) = client.take_output() {
//!         client_socket.write_all(&bytes).unwrap();
//!     }
//!     let mut buf = [0u8; 4096];
//!     if let Ok(n) = client_socket.read(&mut buf) {
//!         client_in.extend_from_slice(&buf[..n]);
//!         client.received(&mut client_in).unwrap();
//!     }
//!     while let Some(event) = client.poll_event() {
//!         connected |= event == ClientEvent::Connected;
//!     }
//!     if connected {
//!         break;
//!     }
//!     std::thread::yield_now();
//! }
//! assert!(connected);
//! ```
//!
//! ## Embedding 2: no sockets at all
//!
//! With the `testkit` feature, `testkit::MemoryNet` wires clients to a node in memory, and
//! `sim::SimNet` does so over a seeded network with latency, jitter, loss and segmentation in
//! virtual time: the base of
//! deterministic simulation tests (the same seed replays byte for byte);
//! `sim_cluster::SimCluster` does it for several nodes whose relays connect to each other
//! (an origin and its edges). See
//! `examples/sim_live.rs` for ten minutes of media to 100 players in a few seconds, and
//! `examples/soak.rs` for an hour of churning gateway calls and players over a lossy,
//! reordering network with every frame accounted for and the heap counted.

#![forbid(unsafe_code)]

pub(crate) mod admin;
pub mod amf;
pub(crate) mod byte_blocks;
pub mod close_reason;
pub mod decision;
pub mod flv;
pub mod gateway;
pub mod http;
pub mod id_hash;
pub mod ids;
pub mod io;
pub mod media;
pub mod node;
pub mod record_error;
pub mod rng;
pub mod rtmp;
pub mod rtp;
pub mod sdp;
pub(crate) mod server;
#[cfg(feature = "testkit")]
pub mod sim;
#[cfg(feature = "testkit")]
pub mod sim_cluster;
pub mod sip;
pub mod srtp;
pub mod storage;
pub mod tcp;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tls;
pub mod udp;
pub(crate) mod wire_hash;
pub mod worker_relay;

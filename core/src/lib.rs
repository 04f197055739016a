//! # siprtmp-core
//!
//! The sans-IO protocol core of siprtmp: AMF0/AMF3, RTMP (handshake, chunk stream, messages),
//! FLV, SIP, SDP and RTP/RTCP as pure state machines, plus the live media server application
//! that ties them together behind one [`node::Node`] API.
//!
//! Nothing in this crate opens a socket, reads a clock, spawns a thread or touches the file
//! system. Bytes and time go in, actions come out; a driver (mio, tokio, threads, async-std, or
//! your own loop) moves them between the machine and the operating system.

#![forbid(unsafe_code)]

pub mod amf;
pub mod decision;
pub mod flv;
pub mod node;
pub mod rng;
pub mod rtmp;
pub mod server;
pub mod storage;
pub mod testkit;

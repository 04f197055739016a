//! The io-uring driver as one worker of a group ([`siprtmp_runtime_common::Workers`]): its
//! own thread, poll, ring and node, a listening socket sharing the port with the other
//! workers', and the relay to them woken through the poll's `Waker` (as the mio driver's
//! workers).
//!
//! ```no_run
//! use siprtmp_core::node::NodeConfig;
//! use siprtmp_runtime_common::{DriverConfig, Workers};
//! use siprtmp_runtime_io_uring::UringDriver;
//! let config = DriverConfig { listen: "127.0.0.1:1935".parse().unwrap(), ..DriverConfig::default() };
//! let workers = Workers::start::<UringDriver>(config, NodeConfig::default(), 2, |_, _| None).unwrap();
//! workers.stopper().stop();
//! workers.join().unwrap();
//! ```

use std::io;

use siprtmp_core::node::NodeConfig;
use siprtmp_runtime_common::{DriverConfig, WorkerDriver, WorkerSeat};

use crate::UringDriver;

impl WorkerDriver for UringDriver {
    fn bind_worker(config: DriverConfig, node: NodeConfig, seat: WorkerSeat) -> io::Result<Self> {
        UringDriver::build(
            config,
            node,
            seat.listener,
            seat.tls_listener,
            Some(seat.relay),
        )
    }
}

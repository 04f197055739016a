//! The load generator: one process, one thread, one mio `Poll` driving a publisher and
//! thousands of players, each a sans-IO `RtmpClient` over TCP.

pub mod conn;
pub mod generator;
pub mod media;

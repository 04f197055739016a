//! The load generator: one process, one thread, one mio `Poll` driving a publisher and
//! thousands of players (or N gateway calls), each a sans-IO `RtmpClient` over TCP.

pub mod calls;
pub mod conn;
pub mod echo_load;
pub mod generator;
pub mod media;

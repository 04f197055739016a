//! The load generator: one process, one thread, one mio `Poll` driving a publisher and
//! thousands of players (or N publishers, or N gateway calls), each a sans-IO `RtmpClient`
//! over TCP.

pub(crate) mod calls;
pub(crate) mod conn;
pub(crate) mod delay;
pub(crate) mod echo_load;
pub(crate) mod echo_match;
pub(crate) mod generator;
pub(crate) mod media;
pub(crate) mod publishers;
pub(crate) mod tls;

//! Workers numbered 64 and up: their connection ids have a bit set that, used as the poll's
//! token as it stands, fell in the range of the node's UDP tokens, so such a worker took its
//! connections' reads for datagrams and never answered them. Every worker's connections must
//! be served.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use siprtmp_core::node::NodeConfig;
use siprtmp_runtime_common::{DriverConfig, Workers};
use siprtmp_runtime_mio::MioDriver;

/// Workers 64 to 99 are past the old collision: 36% of the group.
const WORKERS: usize = 100;
/// Connections the kernel spreads over the workers (`SO_REUSEPORT` hashes each one's address
/// pair): with 36% of them landing past worker 63, the chance that none does is 0.64^40, about
/// 2e-8.
const CLIENTS: usize = 40;

/// C0+C1 in, S0+S1+S2 (3,073 bytes) back within `deadline`.
fn handshake(addr: SocketAddr, deadline: Instant) -> io::Result<()> {
    let mut client = TcpStream::connect(addr)?;
    let left = deadline.saturating_duration_since(Instant::now());
    client.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0; 1536]);
    client.write_all(&c0c1)?;
    let mut answer = [0u8; 3073];
    client.read_exact(&mut answer)?;
    assert_eq!(answer[0], 3, "S0 is the version");
    Ok(())
}

#[test]
fn every_worker_of_a_large_group_answers_its_connections() {
    let config = DriverConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        root: std::env::temp_dir(),
        ..DriverConfig::default()
    };
    let workers = Workers::start::<MioDriver>(config, NodeConfig::default(), WORKERS, |_, _| None)
        .expect("start workers");
    let addr = workers.local_addr();
    // Connected first, answered after: the clients wait in parallel, one deadline for all.
    let deadline = Instant::now() + Duration::from_secs(20);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| std::thread::spawn(move || handshake(addr, deadline)))
        .collect();
    let unanswered = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .filter(Result::is_err)
        .count();
    workers.stopper().stop();
    workers.join().expect("workers run");
    assert_eq!(
        unanswered, 0,
        "{unanswered} of {CLIENTS} connections never answered"
    );
}

//! The binary's access rules, applied by answering the node's decision events: a shared
//! secret token in the stream name's query (`name?token=...`, compared in constant time),
//! per-application allow lists of addresses for publish and play, and maximum numbers of
//! connections in total and per client address.

use std::collections::HashMap;
use std::net::IpAddr;

use siprtmp_core::node::{Decision, Event, Question, RequestId};

/// An address block: `10.0.0.0/8`, `::1/128`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|e| format!("{s}: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|e| format!("{s}: {e}"))?,
            None => max,
        };
        if prefix > max {
            return Err(format!("{s}: prefix longer than {max}"));
        }
        Ok(Self { addr, prefix })
    }
}

impl IpNet {
    /// Whether `ip` is in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let (net, ip, bits) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                (u128::from(n.to_bits()), u128::from(i.to_bits()), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => (n.to_bits(), i.to_bits(), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        if shift >= bits {
            return true;
        }
        (net >> shift) == (ip >> shift)
    }
}

/// The configured rules; an empty `Rules` accepts everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    /// Token required to publish (`name?token=...`).
    pub publish_token: Option<String>,
    /// Token required to play.
    pub play_token: Option<String>,
    /// Most connections at once.
    pub max_connections: Option<usize>,
    /// Most connections at once from one address.
    pub max_connections_per_ip: Option<usize>,
    /// Per application: who may publish (absent: anyone).
    pub publish_allow: HashMap<String, Vec<IpNet>>,
    /// Per application: who may play (absent: anyone).
    pub play_allow: HashMap<String, Vec<IpNet>>,
}

impl Rules {
    /// True when some rule is set (the node then asks before every connect, publish, play).
    pub(crate) fn is_active(&self) -> bool {
        self.publish_token.is_some()
            || self.play_token.is_some()
            || self.max_connections.is_some()
            || self.max_connections_per_ip.is_some()
            || !self.publish_allow.is_empty()
            || !self.play_allow.is_empty()
    }
}

/// Compares in time that depends only on the lengths, not on where the bytes differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xFF);
        diff |= x ^ y;
    }
    diff == 0
}

/// The `token` parameter of a query string.
fn token(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// Applies [`Rules`] to the node's events, keeping the connection counts.
#[derive(Debug, Default)]
pub(crate) struct Authorizer {
    rules: Rules,
    connections: HashMap<siprtmp_core::node::ConnId, IpAddr>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Authorizer {
    /// An authorizer for `rules`.
    pub(crate) fn new(rules: Rules) -> Self {
        Self {
            rules,
            ..Self::default()
        }
    }

    /// Sees one event; answers decision events.
    pub(crate) fn on_event(&mut self, event: &Event) -> Option<(RequestId, Decision)> {
        match event {
            Event::Decide { request, question } => Some((*request, self.decide(question))),
            Event::Disconnected { conn } => {
                if let Some(ip) = self.connections.remove(conn) {
                    if let Some(n) = self.per_ip.get_mut(&ip) {
                        *n -= 1;
                        if *n == 0 {
                            self.per_ip.remove(&ip);
                        }
                    }
                }
                None
            }
            _ => None,
        }
    }

    fn decide(&mut self, question: &Question) -> Decision {
        match question {
            Question::Connect { conn, peer, .. } => {
                let ip = peer.ip().to_canonical();
                if self
                    .rules
                    .max_connections
                    .is_some_and(|max| self.connections.len() >= max)
                {
                    return Decision::Reject("Too many connections.".into());
                }
                let from_ip = self.per_ip.get(&ip).copied().unwrap_or(0);
                if self
                    .rules
                    .max_connections_per_ip
                    .is_some_and(|max| from_ip >= max)
                {
                    return Decision::Reject("Too many connections from your address.".into());
                }
                self.connections.insert(*conn, ip);
                *self.per_ip.entry(ip).or_default() += 1;
                Decision::Accept
            }
            Question::Publish {
                peer, app, query, ..
            } => check(
                &self.rules.publish_allow,
                self.rules.publish_token.as_deref(),
                app,
                peer.ip(),
                query,
                "publish",
            ),
            Question::Play {
                peer, app, query, ..
            } => check(
                &self.rules.play_allow,
                self.rules.play_token.as_deref(),
                app,
                peer.ip(),
                query,
                "play",
            ),
            // A question these rules do not cover is not theirs to refuse.
            _ => Decision::Accept,
        }
    }
}

fn check(
    allow: &HashMap<String, Vec<IpNet>>,
    expected_token: Option<&str>,
    app: &str,
    ip: IpAddr,
    query: &str,
    what: &str,
) -> Decision {
    if let Some(nets) = allow.get(app) {
        if !nets.iter().any(|n| n.contains(ip)) {
            return Decision::Reject(format!("Your address may not {what} in {app}."));
        }
    }
    if let Some(expected) = expected_token {
        let given = token(query).unwrap_or("");
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Decision::Reject("Bad or missing token.".into());
        }
    }
    Decision::Accept
}

#[cfg(test)]
mod tests {
    use super::*;
    use siprtmp_core::node::{ConnId, PublishMode};
    use std::net::SocketAddr;

    fn connect(conn: u64, peer: &str) -> Event {
        Event::Decide {
            request: RequestId(conn),
            question: Question::Connect {
                conn: ConnId(conn),
                peer: peer.parse().unwrap(),
                app: "live".into(),
                tc_url: None,
                args: vec![],
            },
        }
    }

    fn publish(peer: &str, query: &str) -> Event {
        Event::Decide {
            request: RequestId(99),
            question: Question::Publish {
                conn: ConnId(1),
                peer: peer.parse::<SocketAddr>().unwrap(),
                app: "live".into(),
                name: "cam".into(),
                query: query.into(),
                mode: PublishMode::Live,
            },
        }
    }

    #[test]
    fn ip_blocks() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let any: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("192.0.2.1".parse().unwrap()));
        assert!("1.2.3.4/33".parse::<IpNet>().is_err());
        let one: IpNet = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(!one.contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn tokens_compare_whole_values() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"", b"x"));
        let mut auth = Authorizer::new(Rules {
            publish_token: Some("s3cret".into()),
            ..Rules::default()
        });
        let answer =
            |auth: &mut Authorizer, q| auth.on_event(&publish("127.0.0.1:1", q)).unwrap().1;
        assert_eq!(answer(&mut auth, "a=1&token=s3cret"), Decision::Accept);
        assert!(matches!(
            answer(&mut auth, "token=s3cre"),
            Decision::Reject(_)
        ));
        assert!(matches!(answer(&mut auth, ""), Decision::Reject(_)));
    }

    #[test]
    fn allow_lists_apply_per_application() {
        let mut rules = Rules::default();
        rules
            .publish_allow
            .insert("live".into(), vec!["127.0.0.0/8".parse().unwrap()]);
        let mut auth = Authorizer::new(rules);
        assert_eq!(
            auth.on_event(&publish("127.0.0.1:5", "")).unwrap().1,
            Decision::Accept
        );
        assert!(matches!(
            auth.on_event(&publish("192.0.2.7:5", "")).unwrap().1,
            Decision::Reject(_)
        ));
    }

    #[test]
    fn connection_limits_count_and_release() {
        let mut auth = Authorizer::new(Rules {
            max_connections: Some(3),
            max_connections_per_ip: Some(2),
            ..Rules::default()
        });
        let decide = |auth: &mut Authorizer, n, peer| auth.on_event(&connect(n, peer)).unwrap().1;
        assert_eq!(decide(&mut auth, 1, "10.0.0.1:1"), Decision::Accept);
        assert_eq!(decide(&mut auth, 2, "10.0.0.1:2"), Decision::Accept);
        assert!(matches!(
            decide(&mut auth, 3, "10.0.0.1:3"),
            Decision::Reject(_)
        ));
        assert_eq!(decide(&mut auth, 4, "10.0.0.2:1"), Decision::Accept);
        assert!(matches!(
            decide(&mut auth, 5, "10.0.0.3:1"),
            Decision::Reject(_)
        ));
        auth.on_event(&Event::Disconnected { conn: ConnId(1) });
        assert_eq!(decide(&mut auth, 6, "10.0.0.1:4"), Decision::Accept);
    }
}

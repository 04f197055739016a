//! Several packets in one fuzz input: each is a 2-byte big-endian length followed by that many
//! bytes (a short last packet takes what is left). Targets of stateful receivers split their
//! input with [`split`]; the seed generator writes real packet sequences with [`join`].

/// The packets of `data`.
pub fn split(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        data = &rest[take..];
    }
    out
}

/// `packets` in the layout [`split`] reads (each cut to 65535 bytes).
pub fn join<'a>(packets: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in packets {
        let p = &p[..p.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

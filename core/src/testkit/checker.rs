//! [`MediaChecker`]: what a player receives, checked message by message against what was
//! published.

/// Checks, message by message, what a player receives against what was published: the codec
/// configurations, then every frame from one point on (a keyframe, for a player that joined
/// late), in order and byte-identical. Stream ids are ignored (each player has its own).
/// Incremental, so that long runs need not keep what players received.
#[derive(Debug)]
pub struct MediaChecker {
    frames: Vec<(u8, u32, bytes::Bytes)>,
    configs: usize,
    next: Option<usize>,
    checked: usize,
    error: Option<String>,
}

impl MediaChecker {
    /// A checker against the `published` messages.
    pub fn new(published: &[crate::rtmp::message::RtmpMessage]) -> Self {
        let frames = published
            .iter()
            .filter(|m| is_media(m) && !is_config(m))
            .map(|m| (m.type_id, m.timestamp, m.payload.clone()))
            .collect();
        Self {
            frames,
            configs: 0,
            next: None,
            checked: 0,
            error: None,
        }
    }

    /// One message the player received (non-media messages are ignored).
    pub fn check(&mut self, msg: &crate::rtmp::message::RtmpMessage) {
        if self.error.is_some() || !is_media(msg) {
            return;
        }
        if is_config(msg) {
            self.configs += 1;
            return;
        }
        let key = (msg.type_id, msg.timestamp, msg.payload.clone());
        let index = match self.next {
            Some(i) => i,
            None => match self.frames.iter().position(|f| *f == key) {
                Some(i) => i,
                None => {
                    self.error = Some(format!("first frame at {} ms never published", key.1));
                    return;
                }
            },
        };
        if self.frames.get(index) != Some(&key) {
            self.error = Some(format!(
                "frame {index} differs or is missing (got {} ms)",
                key.1
            ));
            return;
        }
        self.next = Some(index + 1);
        self.checked += 1;
    }

    /// The verdict once publishing is over: how many frames matched, or what went wrong.
    pub fn finish(&self) -> Result<usize, String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.configs < 2 {
            return Err(format!(
                "{} codec configurations received, want 2",
                self.configs
            ));
        }
        match self.next {
            None => Err("no frames received".into()),
            Some(n) if n != self.frames.len() => {
                Err(format!("stopped after frame {n} of {}", self.frames.len()))
            }
            Some(_) => Ok(self.checked),
        }
    }
}

fn is_media(m: &crate::rtmp::message::RtmpMessage) -> bool {
    use crate::rtmp::message::type_id;
    m.type_id == type_id::AUDIO || m.type_id == type_id::VIDEO
}

fn is_config(m: &crate::rtmp::message::RtmpMessage) -> bool {
    use crate::flv::media::{classify_audio, classify_video};
    use crate::rtmp::message::type_id;
    match m.type_id {
        type_id::VIDEO => classify_video(&m.payload).is_some_and(|v| v.sequence_header),
        type_id::AUDIO => classify_audio(&m.payload).is_some_and(|a| a.sequence_header),
        _ => false,
    }
}

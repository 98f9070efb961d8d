//! The CPU-heavy stand-in for transcoding: every frame is a buffer derived from the video's id
//! and the frame number, hashed `rounds` times (SHA-256, each round over the buffer and the
//! previous digest); the video's digest is the SHA-256 of its frame digests.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes of one frame buffer.
pub const FRAME_BYTES: usize = 4096;

/// What `POST /videos` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VideoSpec {
    /// Frames to transcode (1..=10 000).
    pub frames: u32,
    /// Hash rounds per frame (1..=1 000 000): the CPU cost of a frame.
    pub rounds: u32,
    /// Makes the first `fail_attempts` attempts fail after their first frame, as a flaky
    /// source would (0..=100): shows the retry policy at work.
    pub fail_attempts: u32,
}

impl Default for VideoSpec {
    fn default() -> Self {
        Self {
            frames: 30,
            rounds: 2000,
            fail_attempts: 0,
        }
    }
}

/// A [`VideoSpec`] out of bounds.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field} must be in {min}..={max}, got {value}")]
pub struct VideoSpecError {
    field: &'static str,
    min: u32,
    max: u32,
    value: u32,
}

impl VideoSpec {
    /// Checks the bounds; the error names the field.
    pub fn validate(&self) -> Result<(), VideoSpecError> {
        for (field, value, min, max) in [
            ("frames", self.frames, 1, 10_000),
            ("rounds", self.rounds, 1, 1_000_000),
            ("fail_attempts", self.fail_attempts, 0, 100),
        ] {
            if !(min..=max).contains(&value) {
                return Err(VideoSpecError {
                    field,
                    min,
                    max,
                    value,
                });
            }
        }
        Ok(())
    }
}

/// The digest of one frame: CPU-bound, run it off the async workers.
pub fn frame_digest(video_id: &str, frame: u32, rounds: u32) -> [u8; 32] {
    let mut buffer = vec![0u8; FRAME_BYTES];
    let mut seed: [u8; 32] = Sha256::new()
        .chain_update(video_id.as_bytes())
        .chain_update(frame.to_le_bytes())
        .finalize()
        .into();
    for chunk in buffer.chunks_mut(32) {
        chunk.copy_from_slice(&seed[..chunk.len()]);
        seed = Sha256::digest(seed).into();
    }
    let mut digest = [0u8; 32];
    for _ in 0..rounds {
        digest = Sha256::new()
            .chain_update(digest)
            .chain_update(&buffer)
            .finalize()
            .into();
    }
    digest
}

/// The video's digest (lower-case hex) from its frame digests, in order.
pub fn video_digest(frames: &[[u8; 32]]) -> String {
    let mut hasher = Sha256::new();
    for f in frames {
        hasher.update(f);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_deterministic_and_depend_on_every_input() {
        let a = frame_digest("v1", 0, 3);
        assert_eq!(a, frame_digest("v1", 0, 3));
        assert_ne!(a, frame_digest("v2", 0, 3));
        assert_ne!(a, frame_digest("v1", 1, 3));
        assert_ne!(a, frame_digest("v1", 0, 4));
        let d = video_digest(&[a, frame_digest("v1", 1, 3)]);
        assert_eq!(d.len(), 64);
        assert_ne!(d, video_digest(&[frame_digest("v1", 1, 3), a]));
    }

    #[test]
    fn spec_bounds_are_named() {
        assert!(VideoSpec::default().validate().is_ok());
        let err = VideoSpec {
            frames: 0,
            ..VideoSpec::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.to_string(), "frames must be in 1..=10000, got 0");
        let err = VideoSpec {
            fail_attempts: 101,
            ..VideoSpec::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().starts_with("fail_attempts"), "{err}");
    }
}

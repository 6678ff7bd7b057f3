//! SRTP protection of outgoing RTP with AEAD_AES_128_GCM (RFC 7714), the
//! profile str0m negotiates first with browsers, done with str0m's own
//! cipher (its crypto provider, aws-lc-rs here): the per-packet work every
//! SFU does for every viewer, whatever else it does. Used by the floor
//! benchmark; no key exchange, the keys are made up.

use anyhow::{anyhow, Result};
use str0m::crypto::{AeadAes128Gcm, AeadAes128GcmCipher};

/// Bytes the authentication tag adds to each packet.
pub const TAG_LEN: usize = AeadAes128Gcm::TAG_LEN;

/// One SRTP sending context: key, salt and the rollover counter of one
/// SSRC, as a viewer's session holds it.
pub struct SrtpSender {
    cipher: Box<dyn AeadAes128GcmCipher>,
    salt: [u8; 12],
    ssrc: u32,
    /// Extended sequence number (rollover counter × 2^16 + sequence number)
    /// of the next packet.
    index: u64,
}

impl SrtpSender {
    pub fn new(key: [u8; 16], salt: [u8; 12], ssrc: u32, first_seq: u16) -> SrtpSender {
        let cipher = str0m::crypto::from_feature_flags()
            .srtp_provider
            .aead_aes_128_gcm()
            .create_cipher(key, true);
        SrtpSender {
            cipher,
            salt,
            ssrc,
            index: u64::from(first_seq),
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number the next packet must carry.
    pub fn next_seq(&self) -> u16 {
        self.index as u16
    }

    /// Protects one RTP packet whose plaintext header is already in
    /// `out[..header_len]` (it is the AAD, left in clear): encrypts `payload`
    /// into `out[header_len..]` and appends the tag. `out` must be exactly
    /// `header_len + payload.len() + TAG_LEN` long. Advances the sequence.
    pub fn protect(&mut self, out: &mut [u8], header_len: usize, payload: &[u8]) -> Result<()> {
        if out.len() != header_len + payload.len() + TAG_LEN || header_len < 12 {
            return Err(anyhow!(
                "SRTP output of {} bytes for a {header_len}-byte header and {} bytes of payload",
                out.len(),
                payload.len()
            ));
        }
        let roc = (self.index >> 16) as u32;
        let iv = AeadAes128Gcm::rtp_iv(self.salt, self.ssrc, roc, self.index as u16);
        let (header, body) = out.split_at_mut(header_len);
        self.cipher
            .encrypt(&iv, header, payload, body)
            .map_err(|e| anyhow!("AES-GCM: {e}"))?;
        self.index += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7714 §16.1.1: the AEAD_AES_128_GCM RTP test vector (session key
    /// and salt as given there, SSRC 0x5501a0b2, sequence 0xf17b, ROC 0).
    #[test]
    fn rfc7714_rtp_vector_is_reproduced() {
        let key: [u8; 16] = [
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
            0x0e, 0x0f,
        ];
        let salt: [u8; 12] = [
            0x51, 0x75, 0x69, 0x64, 0x20, 0x70, 0x72, 0x6f, 0x20, 0x71, 0x75, 0x6f,
        ];
        let plain: &[u8] = &[
            0x80, 0x40, 0xf1, 0x7b, 0x80, 0x41, 0xf8, 0xd3, 0x55, 0x01, 0xa0, 0xb2, 0x47, 0x61,
            0x6c, 0x6c, 0x69, 0x61, 0x20, 0x65, 0x73, 0x74, 0x20, 0x6f, 0x6d, 0x6e, 0x69, 0x73,
            0x20, 0x64, 0x69, 0x76, 0x69, 0x73, 0x61, 0x20, 0x69, 0x6e, 0x20, 0x70, 0x61, 0x72,
            0x74, 0x65, 0x73, 0x20, 0x74, 0x72, 0x65, 0x73,
        ];
        let protected: &[u8] = &[
            0x80, 0x40, 0xf1, 0x7b, 0x80, 0x41, 0xf8, 0xd3, 0x55, 0x01, 0xa0, 0xb2, 0xf2, 0x4d,
            0xe3, 0xa3, 0xfb, 0x34, 0xde, 0x6c, 0xac, 0xba, 0x86, 0x1c, 0x9d, 0x7e, 0x4b, 0xca,
            0xbe, 0x63, 0x3b, 0xd5, 0x0d, 0x29, 0x4e, 0x6f, 0x42, 0xa5, 0xf4, 0x7a, 0x51, 0xc7,
            0xd1, 0x9b, 0x36, 0xde, 0x3a, 0xdf, 0x88, 0x33, 0x89, 0x9d, 0x7f, 0x27, 0xbe, 0xb1,
            0x6a, 0x91, 0x52, 0xcf, 0x76, 0x5e, 0xe4, 0x39, 0x0c, 0xce,
        ];
        let mut sender = SrtpSender::new(key, salt, 0x5501_a0b2, 0xf17b);
        let mut out = vec![0u8; plain.len() + TAG_LEN];
        out[..12].copy_from_slice(&plain[..12]);
        sender
            .protect(&mut out, 12, &plain[12..])
            .expect("protects");
        assert_eq!(out, protected);
        assert_eq!(sender.next_seq(), 0xf17c);
        assert!(
            sender.protect(&mut out[..60], 12, &plain[12..]).is_err(),
            "wrong length"
        );
    }

    #[test]
    fn the_rollover_counter_follows_the_sequence_past_its_wrap() {
        let mut sender = SrtpSender::new([7; 16], [9; 12], 1, 0xffff);
        let mut out = vec![0u8; 12 + 4 + TAG_LEN];
        sender
            .protect(&mut out, 12, &[1, 2, 3, 4])
            .expect("protects");
        assert_eq!(sender.next_seq(), 0);
        assert_eq!(sender.index, 0x1_0000, "ROC 1, sequence 0");
    }
}

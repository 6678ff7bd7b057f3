//! STUN message codec glue: the attribute set we understand (RFC 8489,
//! RFC 8656) on top of `stun_codec`, raw-bytes MESSAGE-INTEGRITY checks,
//! and hand-written encoders for the two messages on the relay hot path
//! (ChannelData and the Data indication), which must not allocate.

use std::net::SocketAddr;

pub use crate::channel_number::ChannelNumber;
use bytecodec::{DecodeExt, EncodeExt};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use stun_codec::rfc5389::attributes::{
    AlternateServer, ErrorCode, Fingerprint, MappedAddress, MessageIntegrity, Nonce, Realm,
    Software, UnknownAttributes, Username, XorMappedAddress,
};
use stun_codec::rfc5766::attributes::{
    Data, DontFragment, EvenPort, Lifetime, RequestedTransport, ReservationToken, XorPeerAddress,
    XorRelayAddress,
};
use stun_codec::rfc8656::attributes::{AdditionalAddressFamily, RequestedAddressFamily};
use stun_codec::{Message, MessageDecoder, MessageEncoder};

stun_codec::define_attribute_enums!(
    Attribute,
    AttributeDecoder,
    AttributeEncoder,
    [
        MappedAddress,
        Username,
        MessageIntegrity,
        ErrorCode,
        UnknownAttributes,
        Realm,
        Nonce,
        XorMappedAddress,
        Software,
        AlternateServer,
        Fingerprint,
        ChannelNumber,
        Lifetime,
        XorPeerAddress,
        Data,
        XorRelayAddress,
        EvenPort,
        RequestedTransport,
        DontFragment,
        ReservationToken,
        RequestedAddressFamily,
        AdditionalAddressFamily
    ]
);

pub type StunMessage = Message<Attribute>;

/// STUN magic cookie (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const XOR_PEER_ADDRESS: u16 = 0x0012;
pub const DATA: u16 = 0x0013;
const DATA_INDICATION: u16 = 0x0017;

/// What a datagram (or a framed stream record) looks like from its first
/// bytes: RFC 8656 §12 separates STUN (top bits 00) from ChannelData
/// (channel numbers 0x4000-0x4FFF, top bits 01).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Stun,
    ChannelData,
    Other,
}

pub fn classify(bytes: &[u8]) -> Framing {
    match bytes.first() {
        Some(b) if b >> 6 == 0 => Framing::Stun,
        Some(b) if b >> 6 == 1 => Framing::ChannelData,
        _ => Framing::Other,
    }
}

/// Length of the record starting at `bytes` on a stream transport (TCP/TLS),
/// or `None` if fewer than 4 bytes are available. ChannelData over a stream
/// is padded to a multiple of 4 (RFC 8656 §12.5).
pub fn stream_record_len(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 4 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    Some(match classify(bytes) {
        Framing::ChannelData => 4 + len.div_ceil(4) * 4,
        _ => 20 + len,
    })
}

/// Decodes one whole STUN message. `None` for anything malformed,
/// truncated or trailing extra bytes.
pub fn decode(bytes: &[u8]) -> Option<StunMessage> {
    if bytes.len() < 20
        || classify(bytes) != Framing::Stun
        || u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) != MAGIC_COOKIE
    {
        return None;
    }
    let mut decoder = MessageDecoder::<Attribute>::new();
    decoder.decode_from_bytes(bytes).ok()?.ok()
}

/// Encodes a message we built ourselves.
pub fn encode(message: StunMessage) -> Vec<u8> {
    // Only fails on attributes we constructed wrongly, which is a bug.
    MessageEncoder::new()
        .encode_into_bytes(message)
        .expect("our own STUN messages always encode")
}

/// Checks MESSAGE-INTEGRITY over the raw bytes of `raw` with the long-term
/// `key` (RFC 8489 §14.5): HMAC-SHA1 over the message up to the attribute,
/// with the header length adjusted to end just after it. Working on the
/// bytes the client sent (not a re-encoding) makes the check exact.
pub fn integrity_ok(raw: &[u8], key: &[u8]) -> bool {
    let Some(offset) = find_attribute(raw, MESSAGE_INTEGRITY) else {
        return false;
    };
    let Some(received) = raw.get(offset + 4..offset + 24) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        return false;
    };
    let adjusted = (offset + 24 - 20) as u16;
    mac.update(&raw[..2]);
    mac.update(&adjusted.to_be_bytes());
    mac.update(&raw[4..offset]);
    mac.verify_slice(received).is_ok()
}

/// The byte range of the value of the first attribute of type `ty`.
pub fn attribute_value(raw: &[u8], ty: u16) -> Option<std::ops::Range<usize>> {
    let at = find_attribute(raw, ty)?;
    let len = usize::from(u16::from_be_bytes([raw[at + 2], raw[at + 3]]));
    let range = at + 4..at + 4 + len;
    (range.end <= raw.len()).then_some(range)
}

/// Encodes `message` and appends MESSAGE-INTEGRITY computed with `key`.
pub fn encode_with_integrity(message: StunMessage, key: &[u8]) -> Vec<u8> {
    let mut out = encode(message);
    let len = (out.len() - 20 + 24) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes keys of any size");
    mac.update(&out);
    let tag = mac.finalize().into_bytes();
    out.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
    out.extend_from_slice(&20u16.to_be_bytes());
    out.extend_from_slice(&tag);
    out
}

/// Appends FINGERPRINT (RFC 8489 §14.7) to an encoded message: CRC-32 of
/// everything before it, with the length already covering it, XOR
/// 0x5354554e.
pub fn append_fingerprint(out: &mut Vec<u8>) {
    const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let len = (out.len() - 20 + 8) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    let value = CRC32.checksum(out) ^ 0x5354_554e;
    out.extend_from_slice(&0x8028u16.to_be_bytes());
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&value.to_be_bytes());
}

/// Offset of the first attribute of type `ty` in a raw STUN message.
fn find_attribute(raw: &[u8], ty: u16) -> Option<usize> {
    let mut at = 20;
    while at + 4 <= raw.len() {
        let t = u16::from_be_bytes([raw[at], raw[at + 1]]);
        let len = usize::from(u16::from_be_bytes([raw[at + 2], raw[at + 3]]));
        if t == ty {
            return Some(at);
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// Writes a ChannelData message (RFC 8656 §12.4) into `out`; `pad` adds the
/// stream-transport padding.
pub fn write_channel_data(out: &mut Vec<u8>, channel: u16, payload: &[u8], pad: bool) {
    out.clear();
    out.extend_from_slice(&channel.to_be_bytes());
    // Payloads come from a UDP datagram, so they fit in 16 bits.
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    if pad {
        let padded = out.len().div_ceil(4) * 4;
        out.resize(padded, 0);
    }
}

/// Writes a Data indication carrying `payload` from `peer` into `out`
/// (RFC 8656 §11.4), with a random transaction id from `tid`.
pub fn write_data_indication(out: &mut Vec<u8>, tid: [u8; 12], peer: SocketAddr, payload: &[u8]) {
    out.clear();
    out.extend_from_slice(&DATA_INDICATION.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // length, patched below
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(&tid);
    write_xor_address(out, XOR_PEER_ADDRESS, peer, &tid);
    out.extend_from_slice(&DATA.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    let padded = out.len().div_ceil(4) * 4;
    out.resize(padded, 0);
    let len = (out.len() - 20) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
}

fn write_xor_address(out: &mut Vec<u8>, ty: u16, addr: SocketAddr, tid: &[u8; 12]) {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    out.extend_from_slice(&ty.to_be_bytes());
    match addr {
        SocketAddr::V4(a) => {
            out.extend_from_slice(&8u16.to_be_bytes());
            out.extend_from_slice(&[0, 1]);
            out.extend_from_slice(&port.to_be_bytes());
            for (b, c) in a.ip().octets().iter().zip(cookie) {
                out.push(b ^ c);
            }
        }
        SocketAddr::V6(a) => {
            out.extend_from_slice(&20u16.to_be_bytes());
            out.extend_from_slice(&[0, 2]);
            out.extend_from_slice(&port.to_be_bytes());
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&cookie);
            mask[4..].copy_from_slice(tid);
            for (b, m) in a.ip().octets().iter().zip(mask) {
                out.push(b ^ m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun_codec::rfc5766::methods::DATA as DATA_METHOD;
    use stun_codec::{MessageClass, TransactionId};

    #[test]
    fn hand_written_data_indication_decodes_with_the_codec() {
        let peer: SocketAddr = "192.0.2.7:4000".parse().expect("literal");
        let mut out = Vec::new();
        write_data_indication(&mut out, [7; 12], peer, b"hello");
        let m = decode(&out).expect("decodes");
        assert_eq!(m.class(), MessageClass::Indication);
        assert_eq!(m.method(), DATA_METHOD);
        assert_eq!(m.transaction_id(), TransactionId::new([7; 12]));
        assert_eq!(
            m.get_attribute::<XorPeerAddress>().map(|a| a.address()),
            Some(peer)
        );
        assert_eq!(
            m.get_attribute::<Data>().map(|d| d.data().to_vec()),
            Some(b"hello".to_vec())
        );
    }

    #[test]
    fn our_fingerprint_is_accepted_by_the_codec() {
        use stun_codec::rfc5389::methods::BINDING;
        let mut m = StunMessage::new(
            MessageClass::SuccessResponse,
            BINDING,
            TransactionId::new([5; 12]),
        );
        m.add_attribute(XorMappedAddress::new(
            "192.0.2.1:7".parse().expect("literal"),
        ));
        let mut bytes = encode_with_integrity(m, b"key");
        append_fingerprint(&mut bytes);
        let decoded = decode(&bytes).expect("the codec checks the CRC on decode");
        assert!(decoded.get_attribute::<Fingerprint>().is_some());
        assert!(
            integrity_ok(&bytes, b"key"),
            "MI stays valid before FINGERPRINT"
        );
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(decode(&bytes).is_none(), "a wrong CRC is refused");
    }

    #[test]
    fn channel_data_is_padded_only_on_streams() {
        let mut out = Vec::new();
        write_channel_data(&mut out, 0x4001, b"abcde", false);
        assert_eq!(out.len(), 9);
        assert_eq!(stream_record_len(&out), Some(12));
        write_channel_data(&mut out, 0x4001, b"abcde", true);
        assert_eq!(out.len(), 12);
    }

    #[test]
    fn garbage_and_truncated_messages_do_not_decode() {
        assert!(decode(&[]).is_none());
        assert!(decode(&[0u8; 19]).is_none());
        let mut out = Vec::new();
        write_data_indication(
            &mut out,
            [1; 12],
            "192.0.2.1:9".parse().expect("literal"),
            b"x",
        );
        for cut in 0..out.len() {
            assert!(decode(&out[..cut]).is_none(), "cut at {cut}");
        }
        let mut lying = out.clone();
        lying[3] = 200;
        assert!(decode(&lying).is_none());
    }
}

//! Plain STUN binding (RFC 8489 §7) on the media port, so the port doubles
//! as the STUN server named in WHIP/WHEP `Link` headers.
//!
//! str0m's STUN codec only accepts ICE connectivity checks (it requires
//! USERNAME and MESSAGE-INTEGRITY), and its transaction-id type cannot be
//! built from bytes, so the few bytes of a binding response are written here.

use std::net::SocketAddr;

const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
const BINDING_SUCCESS: [u8; 2] = [0x01, 0x01];
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// If `req` is a binding request without USERNAME (not an ICE check),
/// writes the success response for `source` into `out` and returns its length.
pub fn respond(req: &[u8], source: SocketAddr, out: &mut [u8; 64]) -> Option<usize> {
    let header = req.get(..20)?;
    if header[..2] != BINDING_REQUEST || header[4..8] != MAGIC {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if len % 4 != 0 || req.len() != 20 + len {
        return None;
    }
    let mut attrs = &req[20..];
    while attrs.len() >= 4 {
        let typ = u16::from_be_bytes([attrs[0], attrs[1]]);
        let alen = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        if typ == ATTR_USERNAME {
            return None;
        }
        let padded = 4 + alen.div_ceil(4) * 4;
        attrs = attrs.get(padded..)?;
    }
    let trans_id = &header[8..20];
    let mut value = [0u8; 20];
    let port = source.port() ^ 0x2112;
    value[2..4].copy_from_slice(&port.to_be_bytes());
    let vlen = match source {
        SocketAddr::V4(a) => {
            value[1] = 0x01;
            for (i, b) in a.ip().octets().iter().enumerate() {
                value[4 + i] = b ^ MAGIC[i];
            }
            8
        }
        SocketAddr::V6(a) => {
            value[1] = 0x02;
            let key: Vec<u8> = MAGIC.iter().chain(trans_id).copied().collect();
            for (i, b) in a.ip().octets().iter().enumerate() {
                value[4 + i] = b ^ key[i];
            }
            20
        }
    };
    let total = 20 + 4 + vlen;
    out[..2].copy_from_slice(&BINDING_SUCCESS);
    out[2..4].copy_from_slice(&((4 + vlen) as u16).to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC);
    out[8..20].copy_from_slice(trans_id);
    out[20..22].copy_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    out[22..24].copy_from_slice(&(vlen as u16).to_be_bytes());
    out[24..24 + vlen].copy_from_slice(&value[..vlen]);
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attrs: &[u8]) -> Vec<u8> {
        let mut r = vec![0x00, 0x01];
        r.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        r.extend_from_slice(&MAGIC);
        r.extend_from_slice(b"abcdefghijkl");
        r.extend_from_slice(attrs);
        r
    }

    #[test]
    fn answers_with_the_xor_mapped_source() {
        let mut out = [0u8; 64];
        let src: SocketAddr = "192.0.2.7:40000".parse().expect("addr");
        let n = respond(&request(&[]), src, &mut out).expect("answered");
        assert_eq!(n, 32);
        assert_eq!(&out[..2], &BINDING_SUCCESS);
        assert_eq!(&out[8..20], b"abcdefghijkl");
        let port = u16::from_be_bytes([out[26], out[27]]) ^ 0x2112;
        assert_eq!(port, 40000);
        let ip: Vec<u8> = out[28..32].iter().zip(MAGIC).map(|(a, m)| a ^ m).collect();
        assert_eq!(ip, vec![192, 0, 2, 7]);
    }

    #[test]
    fn ice_checks_and_garbage_are_not_answered() {
        let mut out = [0u8; 64];
        let src: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        assert!(respond(
            &request(&[0x00, 0x06, 0x00, 0x04, b'a', b':', b'b', 0]),
            src,
            &mut out
        )
        .is_none());
        assert!(respond(&[0, 1, 0], src, &mut out).is_none());
        let mut bad_len = request(&[]);
        bad_len[3] = 8;
        assert!(respond(&bad_len, src, &mut out).is_none());
        // Attribute length running past the end.
        assert!(respond(&request(&[0x80, 0x22, 0x00, 0xff]), src, &mut out).is_none());
    }
}

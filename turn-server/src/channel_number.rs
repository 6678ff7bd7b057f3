//! CHANNEL-NUMBER accepting RFC 5766's whole range 0x4000-0x7FFF.
//!
//! RFC 8656 narrowed channels to 0x4000-0x4FFF and `stun_codec` refuses a
//! message carrying anything above, but coturn's clients (and other RFC 5766
//! clients) pick numbers up to 0x7FFF; ChannelData framing (top bits 01)
//! covers them all, so we accept them.

use bytecodec::fixnum::{U32beDecoder, U32beEncoder};
use bytecodec::{ByteCount, Decode, Encode, Eos, Result, SizedEncode, TryTaggedDecode};
use stun_codec::AttributeType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelNumber(u16);

impl ChannelNumber {
    pub const CODEPOINT: u16 = 0x000C;
    pub const MIN: u16 = 0x4000;
    pub const MAX: u16 = 0x7FFF;

    pub fn new(n: u16) -> ChannelNumber {
        ChannelNumber(n)
    }

    pub fn value(self) -> u16 {
        self.0
    }

    pub fn is_valid(self) -> bool {
        (Self::MIN..=Self::MAX).contains(&self.0)
    }
}

impl stun_codec::Attribute for ChannelNumber {
    type Decoder = ChannelNumberDecoder;
    type Encoder = ChannelNumberEncoder;

    fn get_type(&self) -> AttributeType {
        AttributeType::new(Self::CODEPOINT)
    }
}

#[derive(Debug, Default)]
pub struct ChannelNumberDecoder(U32beDecoder);

impl Decode for ChannelNumberDecoder {
    type Item = ChannelNumber;

    fn decode(&mut self, buf: &[u8], eos: Eos) -> Result<usize> {
        self.0.decode(buf, eos)
    }

    fn finish_decoding(&mut self) -> Result<ChannelNumber> {
        // The number is the top 16 bits; the rest is RFFU.
        Ok(ChannelNumber((self.0.finish_decoding()? >> 16) as u16))
    }

    fn requiring_bytes(&self) -> ByteCount {
        self.0.requiring_bytes()
    }

    fn is_idle(&self) -> bool {
        self.0.is_idle()
    }
}

impl TryTaggedDecode for ChannelNumberDecoder {
    type Tag = AttributeType;

    fn try_start_decoding(&mut self, tag: AttributeType) -> Result<bool> {
        Ok(tag.as_u16() == ChannelNumber::CODEPOINT)
    }
}

#[derive(Debug, Default)]
pub struct ChannelNumberEncoder(U32beEncoder);

impl Encode for ChannelNumberEncoder {
    type Item = ChannelNumber;

    fn encode(&mut self, buf: &mut [u8], eos: Eos) -> Result<usize> {
        self.0.encode(buf, eos)
    }

    fn start_encoding(&mut self, item: ChannelNumber) -> Result<()> {
        self.0.start_encoding(u32::from(item.0) << 16)
    }

    fn requiring_bytes(&self) -> ByteCount {
        self.0.requiring_bytes()
    }

    fn is_idle(&self) -> bool {
        self.0.is_idle()
    }
}

impl SizedEncode for ChannelNumberEncoder {
    fn exact_requiring_bytes(&self) -> u64 {
        self.0.exact_requiring_bytes()
    }
}

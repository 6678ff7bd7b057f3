//! JSON bodies the services read from one another and from clients:
//! `signaling::Message` (the stream channel's events and chat, carried
//! through Redis between nodes) parsed from arbitrary bytes; what parses
//! must serialize and parse back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signaling::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = serde_json::from_slice::<Message>(data) else {
        return;
    };
    let json = serde_json::to_vec(&message).expect("a message serializes");
    let again: Message = serde_json::from_slice(&json).expect("what we write parses");
    assert_eq!(
        message,
        again,
        "round trip of {}",
        String::from_utf8_lossy(&json)
    );
});

#!/usr/bin/env python3
"""A WHIP publisher or WHEP viewer built on aiortc, for relaycast's interop tests.

    whip_whep_peer.py publish URL --token KEY [--seconds N] [--bundle-policy P]
    whip_whep_peer.py view URL [--token T] [--frames N] [--audio-frames N] [--bundle-policy P]

The publisher sends H.264 video of a test pattern (320x240, bright top or bright bottom
half, a grey block moving along the middle line) and Opus audio (aiortc's silent track).
The viewer decodes what it receives and reports every decoded video frame's size and the
mean luma of its top and bottom 40 %, so the caller can check the picture, not just the
connection state; it ends once it has decoded N video frames and N audio frames.

Progress goes to stdout as one JSON object per line (`{"event": ...}`); the caller reads
them. Errors end the process with a non-zero status and a message on stderr. Only the
standard library, aiortc and PyAV (an aiortc dependency) are used.
"""

import argparse
import asyncio
import fractions
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import av
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError

WIDTH = 320
HEIGHT = 240
PATTERNS = {"bright-top": (220, 30), "bright-bottom": (30, 220)}


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


class PatternTrack(VideoStreamTrack):
    """The relaycast test pattern (see `TestPattern` in api/tests/support)."""

    def __init__(self, top, bottom):
        super().__init__()
        self.top = top
        self.bottom = bottom
        self.index = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        luma = bytearray([self.top]) * (WIDTH * HEIGHT // 2) + bytearray(
            [self.bottom]
        ) * (WIDTH * HEIGHT // 2)
        block = 16
        x = (self.index * 4) % (WIDTH - block)
        y = HEIGHT // 2 - block // 2
        for row in range(y, y + block):
            start = row * WIDTH + x
            luma[start : start + block] = bytes([128]) * block
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(bytes([128]) * frame.planes[1].buffer_size)
        frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        self.index += 1
        return frame


def http(method, url, body=None, token=None, content_type=None):
    """One HTTP request (blocking; run it in a thread): (status, headers, body)."""
    request = urllib.request.Request(url, data=body, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


async def negotiate(pc, url, token, first_only=False):
    """Offers, POSTs the offer to `url`, applies the answer; returns the session URL."""
    # aiortc gathers its candidates in setLocalDescription: the offer is complete.
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, body = await asyncio.to_thread(
        http,
        "POST",
        url,
        pc.localDescription.sdp.encode(),
        token,
        "application/sdp",
    )
    if status != 201:
        raise RuntimeError(f"POST {url}: {status} {body[:300]!r}")
    answer = body.decode()
    if first_only:
        answer = candidates_in_first_section_only(answer)
    emit("answered", candidates=answer.count("a=candidate:"))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return urllib.parse.urljoin(url, headers.get("Location", ""))


def candidates_in_first_section_only(sdp):
    """The answer as relaycast wrote it before it listed its candidates in every bundled
    m-section (valid per RFC 8843): to reproduce aiortc's failure on it."""
    out, section = [], -1
    for line in sdp.splitlines():
        if line.startswith("m="):
            section += 1
        if section > 0 and line.startswith(("a=candidate:", "a=end-of-candidates")):
            continue
        out.append(line)
    return "\r\n".join(out) + "\r\n"


async def wait_connected(pc, limit):
    deadline = time.monotonic() + limit
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed"):
            raise RuntimeError(f"connection {pc.connectionState}")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"not connected after {limit} s: connection {pc.connectionState}, "
                f"ICE {pc.iceConnectionState}"
            )
        await asyncio.sleep(0.05)
    emit("connected")


async def publish(args):
    top, bottom = PATTERNS[args.pattern]
    pc = RTCPeerConnection(RTCConfiguration(
        bundlePolicy=RTCBundlePolicy(args.bundle_policy)
    ))
    video = pc.addTransceiver(PatternTrack(top, bottom), direction="sendonly")
    video.setCodecPreferences(
        [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() == "video/h264"
        ]
    )
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    session = None
    try:
        session = await negotiate(
            pc, args.url, args.token, args.first_section_candidates_only
        )
        await wait_connected(pc, args.connect_timeout)
        await asyncio.sleep(args.seconds)
        emit("done")
    finally:
        if session:
            await asyncio.to_thread(http, "DELETE", session, None, args.token)
        await pc.close()


async def view(args):
    pc = RTCPeerConnection(RTCConfiguration(
        bundlePolicy=RTCBundlePolicy(args.bundle_policy)
    ))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    frames = asyncio.Queue()
    audio_frames = 0
    sinks = []

    async def read_video(track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            plane = frame.planes[0]
            data = bytes(plane)
            stride = plane.line_size

            def mean(rows):
                total = 0
                for row in rows:
                    total += sum(data[row * stride : row * stride + frame.width])
                return total / (len(rows) * frame.width)

            await frames.put(
                {
                    "width": frame.width,
                    "height": frame.height,
                    "top_luma": mean(range(0, frame.height * 2 // 5)),
                    "bottom_luma": mean(range(frame.height * 3 // 5, frame.height)),
                }
            )

    async def count_audio(track):
        nonlocal audio_frames
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            audio_frames += 1

    @pc.on("track")
    def on_track(track):
        task = read_video(track) if track.kind == "video" else count_audio(track)
        sinks.append(asyncio.ensure_future(task))

    session = None
    try:
        session = await negotiate(
            pc, args.url, args.token, args.first_section_candidates_only
        )
        await wait_connected(pc, args.connect_timeout)
        deadline = time.monotonic() + args.media_timeout
        for _ in range(args.frames):
            left = deadline - time.monotonic()
            try:
                frame = await asyncio.wait_for(frames.get(), timeout=max(left, 0.01))
            except asyncio.TimeoutError:
                raise RuntimeError(
                    f"fewer than {args.frames} decoded frames in {args.media_timeout} s"
                ) from None
            emit("frame", **frame)
        while audio_frames < args.audio_frames:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{audio_frames} decoded audio frames in {args.media_timeout} s, "
                    f"expected {args.audio_frames}"
                )
            await asyncio.sleep(0.02)
        emit("done", audio_frames=audio_frames)
    finally:
        for task in sinks:
            task.cancel()
        if session:
            await asyncio.to_thread(http, "DELETE", session, None, args.token)
        await pc.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["publish", "view"])
    parser.add_argument("url")
    parser.add_argument("--token")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--audio-frames", type=int, default=10)
    parser.add_argument("--pattern", choices=sorted(PATTERNS), default="bright-top")
    parser.add_argument(
        "--bundle-policy",
        choices=["balanced", "max-compat", "max-bundle"],
        default="balanced",
    )
    parser.add_argument(
        "--first-section-candidates-only",
        action="store_true",
        help="drop the answer's candidates from all m-sections but the first",
    )
    parser.add_argument("--connect-timeout", type=float, default=15.0)
    parser.add_argument("--media-timeout", type=float, default=20.0)
    args = parser.parse_args()
    try:
        asyncio.run(publish(args) if args.mode == "publish" else view(args))
    except Exception as error:  # the caller wants the reason on stderr, not a traceback
        print(f"{args.mode}: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

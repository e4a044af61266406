#!/usr/bin/python3
"""A real RTSP server on loopback for tests and demos (Debian's GStreamer RTSP server).

Run it with the *system* Python, which has the ``gi`` bindings (a virtual
environment does not see them)::

    /usr/bin/python3 scripts/rtsp_server.py --port 8554 --file video.mp4
    /usr/bin/python3 scripts/rtsp_server.py --port 8554 --pattern ball --fps 25

It serves ``rtsp://127.0.0.1:PORT/stream`` as H.264 (x264, zero-latency tuning, a
keyframe every second) paced in real time, prints ``READY <url>`` on stdout once it
listens, and runs until killed. Each client gets its own media pipeline, so a file
always plays from its first frame. With ``--user``/``--password`` the stream needs
basic authentication.

Needs: gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,
bad,ugly} gstreamer1.0-libav python3-gi.
"""

from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch_string(args: argparse.Namespace) -> str:
    """The media pipeline of the factory (payloader named ``pay0``)."""
    gop = max(1, round(args.fps))
    enc = (
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} "
        "bframes=0 ! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1"
    )
    if args.file:
        src = f'filesrc location="{args.file}" ! decodebin ! videoconvert ! video/x-raw,format=I420'
        if args.fps_out:
            src += f" ! videorate ! video/x-raw,framerate={args.fps_out}/1"
        return f"( {src} ! {enc} )"
    caps = f"video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1"
    return (
        f"( videotestsrc is-live=true pattern={args.pattern} ! {caps} ! "
        f"timeoverlay ! videoconvert ! video/x-raw,format=I420 ! {enc} )"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8554)
    p.add_argument("--mount", default="/stream")
    p.add_argument("--file", help="video file to serve (decoded and re-encoded)")
    p.add_argument("--fps-out", type=int, default=0, help="resample a file to this rate")
    p.add_argument("--pattern", default="ball", help="videotestsrc pattern (no --file)")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    args = p.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_string(args))
    factory.set_shared(False)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        basic = GstRtspServer.RTSPAuth.make_basic(args.user, args.password)
        auth.add_basic(basic, token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("user", "media.factory.access", True)
        perms.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(perms)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    print(f"READY rtsp://127.0.0.1:{args.port}{args.mount}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

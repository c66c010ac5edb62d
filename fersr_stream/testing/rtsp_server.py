"""A tiny RTSP server for tests: serves one H.264 MP4 file, paced in real time, at rtsp://127.0.0.1:PORT/clip.

Run it with the system Python that has GStreamer's introspection bindings (Debian: python3-gi,
gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good), not the project's virtual environment::

    /usr/bin/python3 rtsp_server.py PORT CLIP.mp4

It imports nothing from fersr_stream, so that interpreter needs neither numpy nor PyAV. It prints ``ready`` once
it listens and serves until killed. Each client gets the file from its start (the media is not shared), the way a
camera's stream starts wherever the client joins; the H.264 is sent as stored (qtdemux's AVC output goes to the
RTP payloader as is, no parser or encoder needed).
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402 - after require_version, as gi asks


def main(port: str, clip: str) -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( filesrc location="{clip}" ! qtdemux ! rtph264pay name=pay0 pt=96 config-interval=1 )')
    server.get_mount_points().add_factory("/clip", factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp_server: cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(*sys.argv[1:])

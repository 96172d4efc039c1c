"""H.264 MP4 that a browser plays, written chunk by chunk (PyAV's bundled libx264).

The file is a *fragmented* MP4: the header comes first and every written batch is flushed as a
self-contained fragment starting on a keyframe, so whatever was written before an interruption
(Ctrl-C, a cancelled request) is already a valid, playable file.
"""

from fractions import Fraction

import av
import numpy as np


def _as_batch(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB frames shaped (T, H, W, 3) or (H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


class Mp4Writer:
    def __init__(self, path, fps: float):
        self.path, self.fps = str(path), fps
        self.container = self.stream = None
        self.frames_written = 0

    def _open(self, height: int, width: int):
        if height % 2 or width % 2:
            raise ValueError(f"H.264 with yuv420p needs even frame sizes, got {width}x{height}")
        # empty_moov + frag_keyframe: header first, one fragment per keyframe (see module doc)
        self.container = av.open(self.path, "w", format="mp4",
                                 options={"movflags": "frag_keyframe+empty_moov+default_base_moof"})
        self.stream = self.container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1000))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        # zerolatency: no frame look-ahead, so each batch is encoded as soon as it is written
        self.stream.options = {"preset": "veryfast", "tune": "zerolatency", "crf": "18"}

    def write(self, frames):
        frames = _as_batch(frames)
        if self.container is None:
            self._open(*frames.shape[1:3])
        elif frames.shape[1:3] != (self.stream.height, self.stream.width):
            raise ValueError(f"frame size changed from {self.stream.height}x{self.stream.width} to "
                             f"{frames.shape[1]}x{frames.shape[2]}")
        for i, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = self.frames_written
            if i == 0:  # each batch (a chunk) starts a new fragment
                video_frame.pict_type = av.video.frame.PictureType.I
            self.container.mux(self.stream.encode(video_frame))
            self.frames_written += 1

    def close(self):
        if self.container is not None:
            self.container.mux(self.stream.encode(None))
            self.container.close()
            self.container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def encode_mp4(frames, path, fps: float):
    with Mp4Writer(path, fps) as writer:
        writer.write(frames)


def read_video(path):
    """(frames uint8 [T, H, W, 3], fps, codec name) of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return np.stack(frames), float(stream.average_rate or stream.guessed_rate), stream.codec_context.name

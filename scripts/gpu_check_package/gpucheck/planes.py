import numpy as np


def join(raw, header):
    """Frame-interleaved planes (y, u, v of frame 0, then frame 1...) as one plane-major buffer."""
    n, h, w = header["frames"], header["height"], header["width"]
    per = h * w * 3 // 2
    frames = raw.reshape(n, per)
    return np.concatenate(
        [frames[:, : h * w].ravel(), frames[:, h * w : h * w * 5 // 4].ravel(), frames[:, h * w * 5 // 4 :].ravel()]
    )


def split(raw, header):
    n, h, w = header["frames"], header["height"], header["width"]
    return {
        "y": raw[: n * h * w].reshape(n, h, w),
        "u": raw[n * h * w : n * h * w * 5 // 4].reshape(n, h // 2, w // 2),
        "v": raw[n * h * w * 5 // 4 :].reshape(n, h // 2, w // 2),
    }

"""The hash kernels: each library's resampling geometry over a reduced image, and PDQ's last steps.

Both hashes start by shrinking the image with a fixed linear filter (pHash: Pillow's Lanczos to
32x32; PDQ: two Jarosz box passes, then 64x64 samples). The decoder may hand us a reduced image
(JPEG: libjpeg's DCT scaling; other formats: a box ``reduce()``), so each kernel integrates the
library's filter over the reduced pixels, and the resampling runs as two small banded matrix products
on one float luma image. PDQ's DCT, median and quality metric (a few lines, as in Meta's reference
code) run here; pHash's DCT and median run in ``imagehash`` on the 32x32 result.
"""

import math
from functools import lru_cache

import numpy as np

from optout.imaging.descriptor import PHASH_HIGHFREQ, PHASH_SIZE

# The picture is reduced as stored, then turned upright. Per upright axis (x, y): whether the turn
# reversed it, which moves the stored picture's short last reduction block to the front.
SHORT_BLOCK_FIRST = {
    1: (False, False),
    2: (True, False),
    3: (True, True),
    4: (False, True),
    5: (False, False),
    6: (True, False),
    7: (True, True),
    8: (False, True),
}


# # Each kernel maps one axis of the reduced image (n_reduced pixels, each the average of `scale`
# full-resolution pixels) to the hash's grid, as the library's filter would on the full image.


def _fold(kernel: np.ndarray, scale: int, n_reduced: int, short_first: bool) -> tuple[np.ndarray, np.ndarray]:
    """Integrate a full-resolution kernel over reduced pixels of ``scale`` source pixels each.

    Returned banded, as (indexes, weights), each (outputs, band): every output reads a short run of
    inputs. Banded products also keep clear of BLAS, whose threads only slow such small products
    down on a busy machine.
    """
    # Decoders round the reduced size up (ceil(n / scale)): the last reduced pixel of the stored
    # picture averages what is left. An EXIF turn that reverses this axis puts that short pixel first.
    pad = n_reduced * scale - kernel.shape[1]
    kernel = np.pad(kernel, ((0, 0), (pad, 0) if short_first else (0, pad)))
    kernel = kernel.reshape(kernel.shape[0], n_reduced, scale).sum(axis=2)
    nonzero = np.abs(kernel) > 1e-9
    first = nonzero.argmax(axis=1)
    length = n_reduced - nonzero[:, ::-1].argmax(axis=1) - first
    offsets = np.arange(length.max())[None, :]
    indexes = np.minimum(first[:, None] + offsets, n_reduced - 1)
    weights = np.where(offsets < length[:, None], np.take_along_axis(kernel, indexes, axis=1), 0.0)
    return indexes, weights.astype(np.float32)


def resample(luma: np.ndarray, rows: tuple[np.ndarray, np.ndarray], cols: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``rows_kernel @ luma @ cols_kernel.T`` with banded kernels."""
    indexes, weights = rows
    partial = np.einsum("ob,obk->ok", weights, luma[indexes])
    indexes, weights = cols
    return np.einsum("ob,obk->ok", weights, partial.T[indexes]).T


@lru_cache(maxsize=256)
def lanczos_kernel(n: int, scale: int, n_reduced: int, short_first: bool, out: int = PHASH_SIZE * PHASH_HIGHFREQ):
    """Pillow's ``resize(..., LANCZOS)`` coefficients for n -> out (Resample.c precompute_coeffs)."""
    step = n / out
    filter_scale = max(step, 1.0)
    support = 3.0 * filter_scale
    kernel = np.zeros((out, n))
    for i in range(out):
        center = (i + 0.5) * step
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n)
        x = (np.arange(lo, hi) - center + 0.5) / filter_scale
        weights = np.where(np.abs(x) < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)
        kernel[i, lo:hi] = weights / weights.sum()
    return _fold(kernel, scale, n_reduced, short_first)


@lru_cache(maxsize=256)
def jarosz_kernel(n: int, scale: int, n_reduced: int, short_first: bool):
    """PDQ's two box-filter passes along one axis, sampled at the 64 decimation points.

    As ThreatExchange's box1DFloat: a window of w = ceil(n / 128) pixels, output i averaging
    input [i - (w - half), i + half - 1] clipped to the edges, half = (w + 2) // 2; then
    decimateFloat samples index int((k + 0.5) * n / 64).
    """
    window = (n + 127) // 128
    half = (window + 2) // 2

    def box_bounds(i):
        return np.maximum(i - (window - half), 0), np.minimum(i + half - 1, n - 1)

    samples = ((np.arange(64) + 0.5) * n / 64).astype(np.int64)
    kernel = np.zeros((64, n + 1))
    first_lo, first_hi = box_bounds(samples)
    for row, (lo, hi) in enumerate(zip(first_lo, first_hi, strict=True)):
        inner = np.arange(lo, hi + 1)  # the first pass reads these outputs of the second
        inner_lo, inner_hi = box_bounds(inner)
        weight = 1.0 / (hi - lo + 1) / (inner_hi - inner_lo + 1)
        np.add.at(kernel[row], inner_lo, weight)
        np.add.at(kernel[row], inner_hi + 1, -weight)
    return _fold(np.cumsum(kernel, axis=1)[:, :n], scale, n_reduced, short_first)


@lru_cache(maxsize=1)
def _pdq_dct() -> np.ndarray:
    i = np.arange(1, 17)[:, None]
    j = np.arange(64)[None, :]
    return (math.sqrt(2.0 / 64.0) * np.cos(math.pi / 128.0 * i * (2 * j + 1))).astype(np.float32)


def pdq_from_buffer(buffer64: np.ndarray) -> tuple[int, int]:
    """PDQ's last steps on the 64x64 downsample: quality metric, 16x16 DCT, bits above the median."""
    # The reference casts each scaled step to int (truncation) before summing.
    steps = np.concatenate([(buffer64[:-1, :] - buffer64[1:, :]).ravel(), (buffer64[:, :-1] - buffer64[:, 1:]).ravel()])
    quality = min(100, int(np.abs(np.trunc(steps * 100.0 / 255.0)).sum()) // 90)
    dct = _pdq_dct()
    coefficients = (dct @ buffer64 @ dct.T).ravel()
    median = np.partition(coefficients, 127)[127]  # Torben's median of 256 values: the 128th smallest
    value = 0
    for k in np.flatnonzero(coefficients > median):
        value |= 1 << int(k)
    return value, quality

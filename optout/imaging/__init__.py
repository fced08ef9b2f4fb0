"""Image signals: hostile bytes in, comparable hashes out. Pure: imports no Django and nothing of optout
outside this package.

It owns decoding hostile input (``decode``: the format allow-list, byte and pixel caps, EXIF orientation),
the pHash and PDQ kernels (``kernels``) and the descriptor naming their parameters (``descriptor``), the
``ImageSignals`` of one picture (``hashes``), comparison and the strength of evidence (``compare``), and the
bit-level forms of hashes (``hashbits``). The names below are its public surface; callers write
``imaging.compute_signals(...)``.
"""

from optout.imaging.compare import Comparison, best_comparison, compare, judge, pdq_distance, phash_distance
from optout.imaging.decode import ALLOWED_FORMATS, ImageRejected
from optout.imaging.descriptor import DESCRIPTOR, PDQ_QUALITY_FLOOR, PIPELINE_VERSION, descriptor_key
from optout.imaging.hashbits import BadHash
from optout.imaging.hashes import ImageSignals, compute_signals, compute_signals_naive, pdq_from_pdqhash_vector

__all__ = [
    "ALLOWED_FORMATS",
    "DESCRIPTOR",
    "PDQ_QUALITY_FLOOR",
    "PIPELINE_VERSION",
    "BadHash",
    "Comparison",
    "ImageRejected",
    "ImageSignals",
    "best_comparison",
    "compare",
    "compute_signals",
    "compute_signals_naive",
    "descriptor_key",
    "judge",
    "pdq_distance",
    "pdq_from_pdqhash_vector",
    "phash_distance",
]

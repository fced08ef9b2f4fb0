"""Image signals: hostile bytes in, comparable hashes out. Pure: imports no Django and nothing of optout
outside this package.

It owns decoding hostile input (``decode``: the format allow-list, byte and pixel caps, EXIF orientation),
the pHash and PDQ kernels (``kernels``) and the descriptor naming their parameters (``descriptor``), the
``ImageSignals`` of one picture (``hashes``), the versioned variants of a picture (``variants``: dihedral
turns and crops of a reference; ``candidates``: trimmed, cut and turned-back candidates), comparison and the strength of evidence (``compare``), and the
bit-level forms of hashes (``hashbits``). The names below are its public surface; callers write
``imaging.compute_signals(...)``.
"""

from optout.imaging.candidates import candidate_variants
from optout.imaging.compare import (
    Comparison,
    best_comparison,
    best_match,
    compare,
    judge,
    pdq_distance,
    phash_distance,
)
from optout.imaging.decode import ALLOWED_FORMATS, ImageRejected
from optout.imaging.descriptor import DESCRIPTOR, PDQ_QUALITY_FLOOR, PIPELINE_VERSION, descriptor_key
from optout.imaging.hashbits import BadHash
from optout.imaging.hashes import (
    Decoded,
    ImageSignals,
    compute_signals,
    compute_signals_naive,
    decode_image,
    pdq_from_pdqhash_vector,
    signals_of,
)
from optout.imaging.variants import (
    IDENTITY,
    REFERENCE_VARIANTS,
    VARIANT_SET,
    Variant,
    describe,
    is_comparable,
    reference_variants,
    variant_descriptor,
    variants_from_dict,
    variants_to_dict,
)

__all__ = [
    "ALLOWED_FORMATS",
    "DESCRIPTOR",
    "PDQ_QUALITY_FLOOR",
    "PIPELINE_VERSION",
    "IDENTITY",
    "REFERENCE_VARIANTS",
    "VARIANT_SET",
    "BadHash",
    "Comparison",
    "Decoded",
    "Variant",
    "ImageRejected",
    "ImageSignals",
    "best_comparison",
    "best_match",
    "candidate_variants",
    "compare",
    "compute_signals",
    "compute_signals_naive",
    "decode_image",
    "describe",
    "is_comparable",
    "descriptor_key",
    "judge",
    "pdq_distance",
    "pdq_from_pdqhash_vector",
    "phash_distance",
    "reference_variants",
    "signals_of",
    "variant_descriptor",
    "variants_from_dict",
    "variants_to_dict",
]

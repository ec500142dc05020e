"""AES-128-CBC from the system's libcrypto, for pyghmi's RMCP+ confidentiality.

pyghmi's session module needs exactly one cipher from the ``cryptography``
package (AES-CBC without padding), but importing it loads cryptography's
whole OpenSSL backend, which costs more than the rest of a fence_ipmilan
``status`` (README, "Fencing", has the numbers).  :func:`install` puts two
tiny modules with the same names and the same calls in ``sys.modules``
before pyghmi is imported; they run the same OpenSSL (EVP ``aes-128-cbc``)
through ctypes.  Only :class:`ocf_lib.ipmi.PyghmiSession` calls it, that is
only with the pyghmi releases whose cryptography imports are known and
tested (``TUNED_PYGHMI``).  When libcrypto cannot be loaded, or the real
package is already loaded, nothing is installed and the real package is used.
"""

from __future__ import annotations

import ctypes
import sys
import types

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_lib: Any = None


def _load() -> Any:
    lib = ctypes.CDLL("libcrypto.so.3")
    lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
    lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
    lib.EVP_aes_128_cbc.restype = ctypes.c_void_p
    lib.EVP_CipherInit_ex.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                      ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    lib.EVP_CIPHER_CTX_set_padding.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.EVP_CipherUpdate.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                     ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_int]
    lib.EVP_CipherFinal_ex.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                       ctypes.POINTER(ctypes.c_int)]
    return lib


class _Context:
    """One encryption or decryption, like cryptography's CipherContext (no padding)."""

    def __init__(self, key: bytes, iv: bytes, encrypt: bool) -> None:
        if len(key) != 16 or len(iv) != 16:
            raise ValueError("AES-128-CBC needs a 16-byte key and IV")
        self.ctx = _lib.EVP_CIPHER_CTX_new()
        if not self.ctx or _lib.EVP_CipherInit_ex(self.ctx, _lib.EVP_aes_128_cbc(), None,
                                                  bytes(key), bytes(iv), int(encrypt)) != 1:
            raise ValueError("libcrypto refused AES-128-CBC")
        _lib.EVP_CIPHER_CTX_set_padding(self.ctx, 0)

    def update(self, data: bytes) -> bytes:
        data = bytes(data)
        out = ctypes.create_string_buffer(len(data) + 32)
        size = ctypes.c_int(0)
        if _lib.EVP_CipherUpdate(self.ctx, out, ctypes.byref(size), data, len(data)) != 1:
            raise ValueError("AES-CBC update failed")
        return out.raw[:size.value]

    def finalize(self) -> bytes:
        out = ctypes.create_string_buffer(32)
        size = ctypes.c_int(0)
        ok = _lib.EVP_CipherFinal_ex(self.ctx, out, ctypes.byref(size))
        _lib.EVP_CIPHER_CTX_free(self.ctx)
        self.ctx = None
        if ok != 1:
            raise ValueError("AES-CBC data is not a whole number of blocks")
        return out.raw[:size.value]


class AES:
    def __init__(self, key: bytes) -> None:
        self.key = bytes(key)


class CBC:
    def __init__(self, iv: bytes) -> None:
        self.iv = bytes(iv)


class Cipher:
    def __init__(self, algorithm: AES, mode: CBC, backend: object = None) -> None:
        if not isinstance(algorithm, AES) or not isinstance(mode, CBC):
            raise ValueError("only AES-CBC is provided")
        self.algorithm = algorithm
        self.mode = mode

    def encryptor(self) -> _Context:
        return _Context(self.algorithm.key, self.mode.iv, True)

    def decryptor(self) -> _Context:
        return _Context(self.algorithm.key, self.mode.iv, False)


def install() -> bool:
    """Provide pyghmi's two cryptography imports; False (and no change) if impossible."""
    global _lib
    if "cryptography.hazmat.primitives.ciphers" in sys.modules:
        return False  # the real package is loaded already: use it
    try:
        _lib = _load()
    except (OSError, AttributeError):
        return False
    backends = types.ModuleType("cryptography.hazmat.backends")
    backends.default_backend = lambda: None  # type: ignore[attr-defined]
    ciphers = types.ModuleType("cryptography.hazmat.primitives.ciphers")
    ciphers.Cipher = Cipher  # type: ignore[attr-defined]
    ciphers.algorithms = types.SimpleNamespace(AES=AES)  # type: ignore[attr-defined]
    ciphers.modes = types.SimpleNamespace(CBC=CBC)  # type: ignore[attr-defined]
    sys.modules["cryptography.hazmat.backends"] = backends
    sys.modules["cryptography.hazmat.primitives.ciphers"] = ciphers
    return True

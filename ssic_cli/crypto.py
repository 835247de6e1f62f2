"""Sealing (AES-256-GCM) and scrambling (keyed Fisher–Yates) of group sections.

Two ways to protect a group, chosen per group and combinable (``docs/SECURITY.md``):

* **seal**: the section's bytes (its rANS words) are encrypted with AES-256-GCM. Without the key
  the group cannot be decoded at all; the associated data binds the ciphertext to the image and
  to its group, so a section cannot be moved to another file or another group.
* **scramble** (paper, supplementary §B): the group's latent symbols are shuffled by a keyed
  Fisher–Yates permutation before entropy coding. Anyone can decode the file; without the key the
  group decodes to noise, with it the group is restored exactly. The coding side lives in
  ``codec.py``; this module makes the permutations.

Everything is explicit: keys, salts, nonces and associated data are arguments, and the only
state is a ``Keyring`` the caller owns (it remembers the scrypt derivations of one decode).

Key material is a key file (raw bytes, at least 16) or a passphrase; each protected group gets its
own random 16-byte salt and derives its key with scrypt (parameters stored in the file). The
derived 64 bytes are split into the cipher (or permutation) key and a key-check key, whose
HMAC tag in the group's params tells a right key from a wrong one before any decryption.

Example (a sealed section round trip; ``header`` normally comes from ``container``)::

    >>> from ssic_cli import container
    >>> from ssic_cli.mask import single_group
    >>> header = container.header_from_mask(64, 48, 3, single_group(64, 48), "m", bytes(16), 4.0)
    >>> key = key_from_bytes(b"0123456789abcdef", "test key")
    >>> params, cipher_key = new_seal(key, FAST_KDF)
    >>> header.groups[0].flags |= container.FLAG_SEALED
    >>> header.groups[0].params = GroupParams(seal=params).pack()
    >>> words = b"rANS words, 4-byte aligned!"
    >>> aad = associated_data(header, 0, len(words) + TAG_BYTES)
    >>> stored = seal(words, cipher_key, params.nonce, aad)
    >>> opened = open_section(header, 0, stored, Keyring([key]))
    >>> opened.data == words, opened.scrambled
    (True, False)
    >>> open_section(header, 0, stored, Keyring([key_from_bytes(b"another key 1234", "k2")]))
    Traceback (most recent call last):
    ssic_cli.errors.WrongKeyError: wrong key for group 'background'
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from .errors import FormatError, KdfBudgetError, KeyRequiredError, SsicError, WrongKeyError  # noqa: F401  (re-exported)

__all__ = [
    "KeyMaterial", "Keyring", "KdfParams", "SealParams", "ScrambleParams", "GroupParams",
    "OpenedSection", "WrongKeyError", "KeyRequiredError", "key_from_file", "key_from_env",
    "key_from_passphrase", "key_from_bytes", "new_seal", "new_scramble", "derive",
    "associated_data", "seal", "unseal", "open_section", "protect_sections", "permutations",
    "scramble_columns", "unscramble_columns", "DEFAULT_KDF", "FAST_KDF", "TAG_BYTES",
]

PARAMS_VERSION = 1
KDF_SCRYPT = 1
SALT_BYTES, NONCE_BYTES, CHECK_BYTES, TAG_BYTES = 16, 12, 8, 16
MIN_KEY_BYTES, MAX_KEY_FILE_BYTES = 16, 64 * 1024
# Limits a reader puts on scrypt parameters from a file, so a forged file cannot make a decoder
# spend minutes or gigabytes: memory 128·r·N ≤ 64 MiB, work r·p·N ≤ 2^20 (4× the default).
_SCRYPT_LOG2_N = range(10, 21)
_SCRYPT_R, _SCRYPT_P = range(1, 33), range(1, 17)
_SCRYPT_MAX_MEMORY, _SCRYPT_MAX_WORK = 64 << 20, 1 << 20
_PERM_CHUNK = 4096                 # Fisher–Yates steps per keystream request

_PARTS_SEAL, _PARTS_SCRAMBLE = 1, 2
_KDF = struct.Struct("<BBBB")      # kdf id, log2 N, r, p
_AAD_TAG = b"ssic sealed section v2\0"
_CHECK_TAG = b"ssic key check v1"


# ----- key material -----------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyMaterial:
    """Secret bytes (a key file's content or a passphrase in UTF-8) and where they came from.

    ``source`` is for messages only; the secret is never printed (not even by ``repr``).
    """

    secret: bytes = field(repr=False)
    source: str = field(default="key", compare=False)


def key_from_bytes(secret: bytes, source: str = "key") -> KeyMaterial:
    """Raw key bytes (at least 16)."""
    secret = bytes(secret)
    if len(secret) < MIN_KEY_BYTES:
        raise SsicError(f"{source} holds {len(secret)} bytes; a key needs at least {MIN_KEY_BYTES}")
    return KeyMaterial(secret, source)


def key_from_file(path: "str | os.PathLike") -> KeyMaterial:
    """The raw bytes of a key file (16 bytes .. 64 KiB), e.g. ``head -c 32 /dev/urandom > k.key``."""
    path = Path(path)
    try:
        with open(path, "rb") as fp:
            data = fp.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SsicError(f"key file {path}: no such file") from None
    except IsADirectoryError:
        raise SsicError(f"key file {path} is a directory") from None
    except OSError as exc:
        raise SsicError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise SsicError(f"key file {path} is over {MAX_KEY_FILE_BYTES // 1024} KiB; a key file holds "
                        "raw key bytes (make one with: head -c 32 /dev/urandom > KEYFILE)")
    if len(data) < MIN_KEY_BYTES:
        raise SsicError(f"key file {path} holds {len(data)} bytes; a key needs at least {MIN_KEY_BYTES} "
                        "(make one with: head -c 32 /dev/urandom > KEYFILE)")
    return KeyMaterial(data, f"key file {path}")


def key_from_passphrase(text: str, source: str = "passphrase") -> KeyMaterial:
    """A passphrase, NFC-normalised (so the same words typed anywhere give the same key)."""
    if not text:
        raise SsicError(f"{source} is empty")
    return KeyMaterial(unicodedata.normalize("NFC", text).encode("utf-8", "surrogateescape"), source)


def key_from_env(var: str, environ: Optional[Mapping[str, str]] = None) -> KeyMaterial:
    """The passphrase held by environment variable ``var`` (never on the command line)."""
    environ = os.environ if environ is None else environ
    value = environ.get(var)
    if value is None:
        raise SsicError(f"environment variable {var} is not set (--passphrase-env names a variable "
                        "that holds the passphrase)")
    return key_from_passphrase(value, f"passphrase in ${var}")


# ----- parameters stored in a group's params blob ------------------------------------------------
@dataclass(frozen=True)
class KdfParams:
    """scrypt settings and the salt of one protected part of one group."""

    log2_n: int
    r: int
    p: int
    salt: bytes
    kdf: int = KDF_SCRYPT

    @property
    def work(self) -> int:
        """scrypt's cost in units of one block mix: N·r·p."""
        return (1 << self.log2_n) * self.r * self.p

    def check(self, what: str) -> None:
        n = 1 << self.log2_n if self.log2_n in _SCRYPT_LOG2_N else 0
        # N < 2^(16·r) is scrypt's own rule (RFC 7914); OpenSSL refuses anything else.
        if (self.kdf != KDF_SCRYPT or not n or self.r not in _SCRYPT_R or self.p not in _SCRYPT_P
                or self.log2_n >= 16 * self.r
                or 128 * self.r * n > _SCRYPT_MAX_MEMORY or self.r * self.p * n > _SCRYPT_MAX_WORK
                or len(self.salt) != SALT_BYTES):
            raise FormatError(f"{what}: key derivation settings are not supported "
                              f"(kdf {self.kdf}, N=2^{self.log2_n}, r={self.r}, p={self.p})")


DEFAULT_KDF = KdfParams(15, 8, 1, b"")     # 32 MiB, ~0.2 s per derivation on one core
FAST_KDF = KdfParams(10, 8, 1, b"")        # for tests only: 1 MiB


def _fresh(kdf: Optional[KdfParams]) -> KdfParams:
    """``kdf``'s settings (``DEFAULT_KDF`` when None) with a new random salt."""
    kdf = DEFAULT_KDF if kdf is None else kdf
    return KdfParams(kdf.log2_n, kdf.r, kdf.p, secrets.token_bytes(SALT_BYTES), kdf.kdf)


@dataclass(frozen=True)
class SealParams:
    kdf: KdfParams
    check: bytes
    nonce: bytes


@dataclass(frozen=True)
class ScrambleParams:
    kdf: KdfParams
    check: bytes


@dataclass(frozen=True)
class GroupParams:
    """What a protected group keeps in its ``params`` blob (layout in ``docs/FORMAT.md``).

    >>> kdf = KdfParams(15, 8, 1, bytes(16))
    >>> gp = GroupParams(seal=SealParams(kdf, bytes(8), bytes(12)), scramble=ScrambleParams(kdf, bytes(8)))
    >>> len(gp.pack()), GroupParams.unpack(gp.pack(), 2 | 4, "person") == gp
    (70, True)
    """

    seal: Optional[SealParams] = None
    scramble: Optional[ScrambleParams] = None

    def pack(self) -> bytes:
        parts = (_PARTS_SEAL if self.seal else 0) | (_PARTS_SCRAMBLE if self.scramble else 0)
        out = bytearray([PARAMS_VERSION, parts])
        if self.seal:
            out += _pack_kdf(self.seal.kdf) + self.seal.check + self.seal.nonce
        if self.scramble:
            out += _pack_kdf(self.scramble.kdf) + self.scramble.check
        return bytes(out)

    @classmethod
    def unpack(cls, data: bytes, flags: int, name: str) -> "GroupParams":
        """Parse and check the params of a group whose flags are ``flags``; ``FormatError`` if bad."""
        from .container import FLAG_SCRAMBLED, FLAG_SEALED
        what = f"protection parameters of group {name!r}"
        want = (_PARTS_SEAL if flags & FLAG_SEALED else 0) | (_PARTS_SCRAMBLE if flags & FLAG_SCRAMBLED else 0)
        if len(data) < 2:
            raise FormatError(f"{what} are missing")
        if data[0] != PARAMS_VERSION:
            raise FormatError(f"{what} have version {data[0]}; this ssic reads version {PARAMS_VERSION}")
        if data[1] != want:
            raise FormatError(f"{what} do not match the group's flags")
        size = 2 + (_KDF.size + SALT_BYTES + CHECK_BYTES + NONCE_BYTES) * bool(want & _PARTS_SEAL) \
            + (_KDF.size + SALT_BYTES + CHECK_BYTES) * bool(want & _PARTS_SCRAMBLE)
        if len(data) != size:
            raise FormatError(f"{what} are {len(data)} bytes, expected {size}")
        pos, seal_p, scramble_p = 2, None, None
        if want & _PARTS_SEAL:
            kdf, pos = _unpack_kdf(data, pos, what)
            check, pos = data[pos:pos + CHECK_BYTES], pos + CHECK_BYTES
            seal_p = SealParams(kdf, check, data[pos:pos + NONCE_BYTES])
            pos += NONCE_BYTES
        if want & _PARTS_SCRAMBLE:
            kdf, pos = _unpack_kdf(data, pos, what)
            scramble_p = ScrambleParams(kdf, data[pos:pos + CHECK_BYTES])
        return cls(seal_p, scramble_p)


def _pack_kdf(kdf: KdfParams) -> bytes:
    return _KDF.pack(kdf.kdf, kdf.log2_n, kdf.r, kdf.p) + kdf.salt


def _unpack_kdf(data: bytes, pos: int, what: str) -> tuple[KdfParams, int]:
    kdf_id, log2_n, r, p = _KDF.unpack_from(data, pos)
    pos += _KDF.size
    kdf = KdfParams(log2_n, r, p, bytes(data[pos:pos + SALT_BYTES]), kdf_id)
    kdf.check(what)
    return kdf, pos + SALT_BYTES


# ----- derivation ----------------------------------------------------------------------------------
def derive(key: KeyMaterial, kdf: KdfParams) -> tuple[bytes, bytes]:
    """(32-byte working key, 8-byte key check) of ``key`` under ``kdf`` (scrypt, 64 bytes out)."""
    scrypt = _backend().Scrypt
    try:
        okm = scrypt(salt=kdf.salt, length=64, n=1 << kdf.log2_n, r=kdf.r, p=kdf.p).derive(key.secret)
    except (MemoryError, ValueError) as exc:      # settings ``check`` passed but this OpenSSL refuses
        raise FormatError(f"key derivation failed on this machine ({exc})") from None
    check = hmac.new(okm[32:], _CHECK_TAG, hashlib.sha256).digest()[:CHECK_BYTES]
    return okm[:32], check


def new_seal(key: KeyMaterial, kdf: Optional[KdfParams] = None) -> tuple[SealParams, bytes]:
    """Fresh salt and nonce for sealing one section: (params to store, AES-256 key)."""
    kdf = _fresh(kdf)
    cipher_key, check = derive(key, kdf)
    return SealParams(kdf, check, secrets.token_bytes(NONCE_BYTES)), cipher_key


def new_scramble(key: KeyMaterial, kdf: Optional[KdfParams] = None) -> tuple[ScrambleParams, bytes]:
    """Fresh salt for scrambling one group: (params to store, permutation key)."""
    kdf = _fresh(kdf)
    perm_key, check = derive(key, kdf)
    return ScrambleParams(kdf, check), perm_key


# What one decode may spend on key derivations: every protected part has its own salt, so a file
# can ask for one scrypt run per group and key; 32 runs at the default settings (~8 s here) is
# far more than a real file needs (groups are sealed by class), and bounds a forged one.
KDF_BUDGET = 32 * DEFAULT_KDF.work


class Keyring:
    """The keys a decoder may try, remembering each scrypt derivation (key × salt) it made.

    ``find`` returns the working key of the first key whose check matches, else None: so a
    holder of k1 opens exactly the parts k1 protected (layered keys). Derivations beyond
    ``budget`` (scrypt work, summed over the keyring's life) raise ``KdfBudgetError``.
    """

    def __init__(self, keys: Sequence[KeyMaterial] = (), budget: Optional[int] = None):
        self.keys = list(keys)
        self._derived: dict[tuple, tuple[bytes, bytes]] = {}
        self._spent, self._budget = 0, KDF_BUDGET if budget is None else budget

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, kdf: KdfParams, check: bytes) -> Optional[bytes]:
        for i, key in enumerate(self.keys):
            memo = (i, kdf)
            if memo not in self._derived:
                if self._spent + kdf.work > self._budget:
                    raise KdfBudgetError(self._spent, self._budget)
                self._spent += kdf.work
                self._derived[memo] = derive(key, kdf)
            working, key_check = self._derived[memo]
            if hmac.compare_digest(key_check, check):
                return working
        return None


# ----- sealing -------------------------------------------------------------------------------------
def associated_data(header, group: int, section_length: int) -> bytes:
    """What a sealed section is bound to: the file, the image, the model, the group and its params.

    The file's random id (so a sealed section cannot be moved into another file, even one whose
    header is otherwise byte-identical), width, height, block size, channels, the tile size of a
    tiled file (absent otherwise, so untiled files keep the version-2 layout), model id, weights
    hash, quality, group index and count, group name and label, the group's flags (without
    PRESENT, which ``extract`` changes), its params (salt, nonce, …), a SHA-256 of the whole
    block mask, and the section's length. Every text and blob is length-prefixed, so no two
    headers give the same bytes.
    """
    from .container import FLAG_PRESENT
    g = header.groups[group]
    ids = np.ascontiguousarray(header.block_ids, np.uint8)
    mask_hash = hashlib.sha256(struct.pack("<II", *ids.shape) + ids.tobytes()).digest()
    text = [s.encode("utf-8") for s in (header.model_id, g.name, g.label)]
    return b"".join([
        _AAD_TAG, bytes(header.file_id),
        struct.pack("<IIHB", header.width, header.height, header.block_size, header.channels),
        struct.pack("<H", header.tile_size) if header.tile_size else b"",     # tiled files only
        struct.pack("<B", len(text[0])), text[0], bytes(header.weights_hash), struct.pack("<f", header.quality),
        struct.pack("<HH", group, len(header.groups)),
        struct.pack("<B", len(text[1])), text[1], struct.pack("<B", len(text[2])), text[2],
        struct.pack("<BH", g.flags & ~FLAG_PRESENT & 0xFF, len(g.params)), bytes(g.params),
        mask_hash, struct.pack("<Q", section_length),
    ])


def seal(plaintext: bytes, key: bytes, nonce: bytes, aad: bytes) -> bytes:
    """AES-256-GCM: ciphertext followed by the 16-byte tag."""
    return _backend().AESGCM(key).encrypt(nonce, bytes(plaintext), aad)


def unseal(stored: bytes, key: bytes, nonce: bytes, aad: bytes, name: str) -> bytes:
    """Inverse of ``seal``; ``FormatError`` if the tag fails (the key already passed its check,
    so the section or the header fields it is bound to were altered, or it came from elsewhere)."""
    b = _backend()
    try:
        return b.AESGCM(key).decrypt(nonce, bytes(stored), aad)
    except b.InvalidTag:
        raise FormatError(f"sealed section of group {name!r} fails authentication: it was altered "
                          "or does not belong to this file") from None


@dataclass
class OpenedSection:
    """A section ready for the rANS decoder. ``perm_key`` is None for a scrambled group whose key
    is not in the keyring: it decodes, but to its scrambled form."""

    data: bytes
    scrambled: bool = False
    perm_key: Optional[bytes] = None


def open_section(header, group: int, stored: bytes, keyring: Keyring) -> OpenedSection:
    """Undo what protects group ``group``'s ``stored`` section, with the keys of ``keyring``.

    Raises ``KeyRequiredError`` (sealed, no keys given), ``WrongKeyError`` (sealed, no key given
    opens it) and ``FormatError`` (bad params, failed authentication).
    """
    from .container import FLAG_SCRAMBLED, FLAG_SEALED
    g = header.groups[group]
    if not g.flags & (FLAG_SEALED | FLAG_SCRAMBLED):
        return OpenedSection(stored)
    params = GroupParams.unpack(g.params, g.flags, g.name)
    data = stored
    if params.seal:
        if len(stored) < TAG_BYTES:
            raise FormatError(f"sealed section of group {g.name!r} is too short ({len(stored)} bytes)")
        if not len(keyring):
            raise KeyRequiredError(g.name)
        cipher_key = keyring.find(params.seal.kdf, params.seal.check)
        if cipher_key is None:
            raise WrongKeyError(g.name)
        data = unseal(stored, cipher_key, params.seal.nonce, associated_data(header, group, len(stored)), g.name)
    perm_key = keyring.find(params.scramble.kdf, params.scramble.check) if params.scramble else None
    return OpenedSection(data, params.scramble is not None, perm_key)


def protect_sections(header, sections: list, seal_keys: Mapping[int, KeyMaterial],
                     scrambled: Mapping[int, ScrambleParams], kdf: Optional[KdfParams] = None) -> list:
    """Set SEALED / SCRAMBLED and the params of the protected groups of ``header`` (in place) and
    return ``sections`` with the sealed ones encrypted. ``scrambled`` holds the params the encoder
    used to scramble those groups (``new_scramble``); sections of absent groups stay None."""
    from .container import FLAG_SCRAMBLED, FLAG_SEALED
    out = list(sections)
    seals = {}
    for g in sorted(set(seal_keys) | set(scrambled)):
        if out[g] is None:
            continue
        entry = header.groups[g]
        if g in seal_keys:
            seals[g] = new_seal(seal_keys[g], kdf)
            entry.flags |= FLAG_SEALED
        if g in scrambled:
            entry.flags |= FLAG_SCRAMBLED
        entry.params = GroupParams(seals[g][0] if g in seals else None, scrambled.get(g)).pack()
    for g, (params, cipher_key) in seals.items():      # after every params blob is final
        aad = associated_data(header, g, len(out[g]) + TAG_BYTES)
        out[g] = seal(out[g], cipher_key, params.nonce, aad)
    return out


# ----- scrambling ------------------------------------------------------------------------------
def permutations(perm_key: bytes, part: bytes, n: int, count: int) -> np.ndarray:
    """``count`` independent random permutations of ``range(n)``, shape (count, n).

    Fisher–Yates (for i = n−1 … 1: swap items i and j, j uniform in 0..i), run for all ``count``
    permutations in lockstep; each j comes from one 64-bit word of a ChaCha20 keystream under
    ``perm_key`` (``part``, ≤ 12 bytes, names the stream), by multiply-shift: ⌊u·(i+1)/2⁶⁴⌋,
    whose bias is below (i+1)/2⁶⁴. Same key, part and sizes → same permutations, on any host.

    >>> p = permutations(bytes(32), b"y", 5, 2)
    >>> p.shape, sorted(p[0].tolist()) == [0, 1, 2, 3, 4], p.tolist() == permutations(bytes(32), b"y", 5, 2).tolist()
    ((2, 5), True, True)
    """
    if not 0 <= n < 1 << 31 or len(part) > 12 or len(perm_key) != 32:
        raise ValueError("permutations: bad sizes")
    perms = np.tile(np.arange(n, dtype=np.int32), (count, 1))
    if n < 2 or count == 0:
        return perms
    b = _backend()
    stream = b.Cipher(b.ChaCha20(perm_key, bytes(4) + part.ljust(12, b"\0")), mode=None).encryptor()
    rows = np.arange(count)
    i = n - 1
    while i >= 1:
        steps = min(i, _PERM_CHUNK)
        words = np.frombuffer(stream.update(bytes(8 * steps * count)), "<u8").reshape(steps, count)
        hi, lo = words >> np.uint64(32), words & np.uint64(0xFFFFFFFF)
        for k in range(steps):
            bound = np.uint64(i + 1)
            j = ((hi[k] * bound + ((lo[k] * bound) >> np.uint64(32))) >> np.uint64(32)).astype(np.int64)
            held = perms[rows, i].copy()
            perms[rows, i] = perms[rows, j]
            perms[rows, j] = held
            i -= 1
    return perms


def scramble_columns(values: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Column c of (n, C) ``values`` shuffled by ``perms[c]``: out[q, c] = values[perms[c, q], c].

    >>> v = np.arange(12).reshape(4, 3)
    >>> p = permutations(bytes(32), b"t", 4, 3)
    >>> np.array_equal(unscramble_columns(scramble_columns(v, p), p), v)
    True
    """
    return np.take_along_axis(values, perms.T.astype(np.intp), axis=0)


def unscramble_columns(values: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Inverse of ``scramble_columns``."""
    out = np.empty_like(values)
    np.put_along_axis(out, perms.T.astype(np.intp), values, axis=0)
    return out


@dataclass(frozen=True)
class KeyedOrder:
    """The order a scrambled group's symbols are coded in: each named stream (``b"z"``, ``b"y"``)
    of each tile (``tag``) gets its own permutations under ``perm_key`` (the model's
    ``SymbolOrder``)."""

    perm_key: bytes
    tag: bytes = b""

    def shuffle(self, stream: bytes, symbols: np.ndarray) -> np.ndarray:
        return scramble_columns(symbols, permutations(self.perm_key, stream + self.tag, *symbols.shape))

    def unshuffle(self, stream: bytes, symbols: np.ndarray) -> np.ndarray:
        return unscramble_columns(symbols, permutations(self.perm_key, stream + self.tag, *symbols.shape))


# ----- backend -------------------------------------------------------------------------------------
class _Backend:
    def __init__(self):
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
        self.InvalidTag, self.Cipher, self.ChaCha20 = InvalidTag, Cipher, algorithms.ChaCha20
        self.AESGCM, self.Scrypt = AESGCM, Scrypt


def _backend() -> _Backend:
    """pyca/cryptography, imported on first use (an optional dependency: ``ssic[crypto]``)."""
    try:
        return _Backend()
    except ImportError:
        raise SsicError("sealing and scrambling need the 'cryptography' package "
                        "(pip install 'ssic[crypto]')") from None

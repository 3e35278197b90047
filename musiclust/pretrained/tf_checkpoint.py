"""A small, TensorFlow-free reader of TF-1 ``Saver`` checkpoints (the V2 "tensor bundle").

Why: the pretrained MusiCNN weights ship only as a TF-1 checkpoint, and TensorFlow is a
1+ GB dependency we do not want at run time. The format is simple enough to read by hand:

* ``PREFIX.index`` is an SSTable (the LevelDB table format, as written by TensorFlow's
  ``tensorflow/core/lib/io/table_builder``): data blocks of prefix-compressed key/value
  entries with restart points, an index block pointing at them, and a 48-byte footer ending in
  the magic number ``0xdb4775248b80fb57``. Every block is followed by a 5-byte trailer: a
  compression byte (only 0, "none", is accepted here) and the *masked* CRC-32C of the block
  plus that byte. Keys are tensor names; the empty key holds a ``BundleHeaderProto``; every
  other value is a ``BundleEntryProto`` (dtype, shape, shard_id, offset, size, crc32c).
* ``PREFIX.data-SSSSS-of-NNNNN`` holds the raw little-endian tensor bytes; each entry's
  ``crc32c`` field is the masked CRC-32C of its bytes, checked here for every tensor read.

Anything that does not look exactly like this raises :class:`musiclust.errors.CheckpointError`
with a message saying what is wrong; nothing is unpickled and nothing is executed.
Optimizer slots (``.../Adam``, ``.../Adam_1``), Adam's ``beta*_power`` and ``global_step`` are
skipped by :func:`read_checkpoint` unless asked for.
"""
from __future__ import annotations

import functools
import os
import struct
import sys
from dataclasses import dataclass

import numpy as np

from musiclust.errors import CheckpointError

TABLE_MAGIC = 0xDB4775248B80FB57  # LevelDB/TF table footer magic (little-endian fixed64)
FOOTER_LEN = 48                   # 2 block handles padded to 40 bytes + 8-byte magic
BLOCK_TRAILER_LEN = 5             # 1 compression byte + 4-byte masked crc32c

# TensorFlow DataType enum values (types.proto) -> numpy little-endian dtypes.
_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?",
           17: "<u2", 19: "<f2", 22: "<u4", 23: "<u8"}

# ----------------------------------------------------------------------------- crc32c
# CRC-32C (Castagnoli, reflected polynomial 0x82F63B78). Pure numpy: the buffer is cut into
# many equal chunks whose raw CRCs (zero initial register) are computed in lock-step, one
# table look-up per byte *column* over all chunks, then joined with the "advance through n
# zero bytes" linear map (as zlib's crc32_combine does): ~0.1 s for MusiCNN's 3 MB of weights,
# ~0.4 s for the whole 9.5 MB data file, on one core.
_POLY = 0x82F63B78
_TABLE = np.zeros(256, dtype=np.uint32)
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE[_i] = _c
_TABLE_PY = [int(v) for v in _TABLE]


def _raw_crc_py(data: bytes, crc: int = 0) -> int:
    for b in data:
        crc = _TABLE_PY[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def _apply_map(m: tuple[int, ...], v: int) -> int:
    """Apply a GF(2)-linear map on 32-bit registers, given as the images of its 32 basis bits."""
    out, i = 0, 0
    while v:
        if v & 1:
            out ^= m[i]
        v >>= 1
        i += 1
    return out


@functools.lru_cache(maxsize=64)
def _zeros_map(nbytes: int) -> tuple[int, ...]:
    """The linear map "feed nbytes zero bytes" on a raw crc register (square-and-multiply)."""
    result = tuple(1 << i for i in range(32))                        # identity
    step = tuple(_raw_crc_py(b"\0", 1 << i) for i in range(32))      # one zero byte
    while nbytes:
        if nbytes & 1:
            result = tuple(_apply_map(step, r) for r in result)
        step = tuple(_apply_map(step, s) for s in step)
        nbytes >>= 1
    return result


def crc32c(data: bytes | memoryview) -> int:
    """Standard CRC-32C of ``data`` (init and final xor 0xFFFFFFFF); crc32c(b"123456789") == 0xE3069283."""
    n = len(data)
    if n < 4096:
        return _raw_crc_py(bytes(data), 0xFFFFFFFF) ^ 0xFFFFFFFF
    lanes = min(1024, n // 256)
    clen = -(-n // lanes)                                               # ceil
    buf = np.zeros(lanes * clen, dtype=np.uint8)
    buf[lanes * clen - n:] = np.frombuffer(data, dtype=np.uint8)       # leading zeros: no-op on a raw crc
    buf[lanes * clen - n:lanes * clen - n + 4] ^= 0xFF                 # init 0xFFFFFFFF == complemented first 4 bytes
    cols = np.ascontiguousarray(buf.reshape(lanes, clen).T)             # (clen, lanes)
    reg = np.zeros(lanes, dtype=np.uint32)                              # (lanes,) raw crc of each chunk
    low = reg.view(np.uint8)[0 if sys.byteorder == "little" else 3::4]   # (lanes,) low byte of each register
    idx, looked_up = np.empty(lanes, np.uint8), np.empty(lanes, np.uint32)
    for j in range(clen):                                               # reg = T[(reg ^ b) & 0xFF] ^ (reg >> 8)
        np.bitwise_xor(low, cols[j], out=idx)
        np.take(_TABLE, idx, out=looked_up)
        reg >>= 8
        reg ^= looked_up
    adv = _zeros_map(clen)
    raw = 0
    for r in reg.tolist():                                              # crc(A||B) = adv_len(B)(crc(A)) ^ crc(B)
        raw = _apply_map(adv, raw) ^ r
    return raw ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """LevelDB/TensorFlow crc masking: rotate right 15 bits, add a constant."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# ----------------------------------------------------------------------------- varints / protobuf
def _varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise CheckpointError(f"truncated varint in {what}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointError(f"varint too long in {what}")


def _proto_fields(buf: bytes, what: str) -> dict[int, list]:
    """Decode one protobuf message into {field number: [values]} (ints or bytes)."""
    fields: dict[int, list] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, what)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(buf, pos, what)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise CheckpointError(f"truncated fixed64 in {what}")
            val = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            ln, pos = _varint(buf, pos, what)
            if pos + ln > len(buf):
                raise CheckpointError(f"truncated length-delimited field in {what}")
            val = bytes(buf[pos:pos + ln])
            pos += ln
        elif wire == 5:
            if pos + 4 > len(buf):
                raise CheckpointError(f"truncated fixed32 in {what}")
            val = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire} in {what}")
        if num == 0:
            raise CheckpointError(f"protobuf field number 0 in {what}")
        fields.setdefault(num, []).append(val)
    return fields


@dataclass(frozen=True)
class BundleEntry:
    """One tensor's location in the data shard(s) (a decoded BundleEntryProto)."""
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int  # masked, as stored


def _decode_entry(name: str, value: bytes) -> BundleEntry:
    what = f"the index entry of {name!r}"
    f = _proto_fields(value, what)
    if 7 in f:
        raise CheckpointError(f"{name!r} is a partitioned (sliced) variable; not supported")
    dt = f.get(1, [0])[-1]
    if dt not in _DTYPES:
        raise CheckpointError(f"{name!r} has unsupported TensorFlow dtype enum {dt}")
    shape: list[int] = []
    if 2 in f:
        sf = _proto_fields(f[2][-1], what + " (shape)")
        if sf.get(3, [0])[-1]:
            raise CheckpointError(f"{name!r} has an unknown-rank shape")
        for dim in sf.get(2, []):
            d = _proto_fields(dim, what + " (dim)").get(1, [0])[-1]
            if d >= 1 << 63:
                d -= 1 << 64
            if d < 0:
                raise CheckpointError(f"{name!r} has a negative dimension {d}")
            shape.append(d)
    if 6 not in f:
        raise CheckpointError(f"{name!r} has no crc32c in its index entry")
    dtype = np.dtype(_DTYPES[dt])
    entry = BundleEntry(name, dtype, tuple(shape), f.get(3, [0])[-1], f.get(4, [0])[-1],
                        f.get(5, [0])[-1], f[6][-1])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if entry.size != expected:
        raise CheckpointError(f"{name!r}: index says {entry.size} bytes but dtype {dtype} and "
                              f"shape {entry.shape} need {expected}")
    return entry


# ----------------------------------------------------------------------------- SSTable
def _read_block(data: bytes, offset: int, size: int, what: str) -> bytes:
    end = offset + size + BLOCK_TRAILER_LEN
    if offset < 0 or size < 0 or end > len(data) - FOOTER_LEN:
        raise CheckpointError(f"{what} (offset {offset}, size {size}) lies outside the index file "
                              f"of {len(data)} bytes: truncated or corrupt")
    block = data[offset:offset + size]
    ctype = data[offset + size]
    stored = struct.unpack_from("<I", data, offset + size + 1)[0]
    if mask_crc(crc32c(data[offset:offset + size + 1])) != stored:
        raise CheckpointError(f"{what}: crc32c mismatch (the index file is corrupt)")
    if ctype != 0:
        raise CheckpointError(f"{what} uses compression type {ctype}; only uncompressed (0) tables are supported")
    return block


def _block_entries(block: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs of one table block: prefix-compressed keys, restart array at the end."""
    if len(block) < 4:
        raise CheckpointError(f"{what} is too short")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * n_restarts
    if n_restarts < 1 or limit < 0:
        raise CheckpointError(f"{what} has a bad restart count {n_restarts}")
    restarts = set(struct.unpack_from(f"<{n_restarts}I", block, limit))
    entries, pos, key = [], 0, b""
    while pos < limit:
        start = pos
        shared, pos = _varint(block, pos, what)
        non_shared, pos = _varint(block, pos, what)
        vlen, pos = _varint(block, pos, what)
        if shared > len(key) or pos + non_shared + vlen > limit:
            raise CheckpointError(f"{what} has a malformed entry at byte {start}")
        if start in restarts and shared:
            raise CheckpointError(f"{what}: a restart point shares a key prefix")
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos:pos + vlen]))
        pos += vlen
    return entries


def read_index(prefix: str) -> tuple[int, dict[str, BundleEntry]]:
    """Parse ``prefix + '.index'`` into (number of data shards, {tensor name: BundleEntry}).

    Checks the footer magic, every block's crc32c, key order, the bundle header and each entry.
    """
    path = prefix + ".index"
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint index {path}: {exc.strerror or exc}") from exc
    if len(data) < FOOTER_LEN:
        raise CheckpointError(f"{path} is {len(data)} bytes, shorter than a table footer: not a TF checkpoint index")
    magic = struct.unpack_from("<Q", data, len(data) - 8)[0]
    if magic != TABLE_MAGIC:
        raise CheckpointError(f"{path} does not end in the TensorFlow table magic (found {magic:#018x}): "
                              "truncated, or not a TF checkpoint index")
    footer = data[len(data) - FOOTER_LEN:]
    _meta_off, p = _varint(footer, 0, "the footer")
    _meta_size, p = _varint(footer, p, "the footer")
    idx_off, p = _varint(footer, p, "the footer")
    idx_size, p = _varint(footer, p, "the footer")
    index_block = _read_block(data, idx_off, idx_size, f"{path}: the index block")
    entries: dict[str, BundleEntry] = {}
    header = None
    last_key = None
    for _sep, handle in _block_entries(index_block, f"{path}: the index block"):
        off, q = _varint(handle, 0, "a block handle")
        size, q = _varint(handle, q, "a block handle")
        what = f"{path}: the data block at {off}"
        for key, value in _block_entries(_read_block(data, off, size, what), what):
            if last_key is not None and key <= last_key:
                raise CheckpointError(f"{path}: keys are not strictly sorted (corrupt table)")
            last_key = key
            if key == b"":
                header = _proto_fields(value, "the bundle header")
                continue
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CheckpointError(f"{path}: a tensor name is not UTF-8") from exc
            entries[name] = _decode_entry(name, value)
    if header is None:
        raise CheckpointError(f"{path} has no bundle header: not a TF-1 V2 checkpoint")
    if header.get(2, [0])[-1] != 0:
        raise CheckpointError(f"{path}: big-endian bundles are not supported")
    n_shards = header.get(1, [1])[-1]
    for e in entries.values():
        if not 0 <= e.shard_id < n_shards:
            raise CheckpointError(f"{e.name!r} names shard {e.shard_id} of {n_shards}")
    return n_shards, entries


def is_training_state(name: str) -> bool:
    """Optimizer slots and counters, which inference never needs."""
    leaf = name.rsplit("/", 1)[-1]
    return leaf in ("Adam", "Adam_1") or name in ("global_step", "beta1_power", "beta2_power")


def read_checkpoint(prefix: str, names=None, include_training_state: bool = False) -> dict[str, np.ndarray]:
    """Read tensors of the checkpoint at ``prefix`` (e.g. ``'.../MTT_musicnn/'``) as numpy arrays.

    ``names``: the tensors wanted (all, less optimizer state, when None); a missing one raises
    CheckpointError. Each tensor's size and crc32c are verified against its index entry.
    """
    n_shards, index = read_index(prefix)
    if names is None:
        names = sorted(n for n in index if include_training_state or not is_training_state(n))
    else:
        missing = [n for n in names if n not in index]
        if missing:
            raise CheckpointError(f"checkpoint {prefix!r} lacks variable(s) {missing[:5]}"
                                  f"{' ...' if len(missing) > 5 else ''}: built for another architecture?")
    out: dict[str, np.ndarray] = {}
    handles: dict[int, object] = {}
    try:
        for name in names:
            e = index[name]
            path = f"{prefix}.data-{e.shard_id:05d}-of-{n_shards:05d}"
            if e.shard_id not in handles:
                try:
                    handles[e.shard_id] = open(path, "rb")
                except OSError as exc:
                    raise CheckpointError(f"cannot read checkpoint data {path}: {exc.strerror or exc}") from exc
            fh = handles[e.shard_id]
            fh.seek(e.offset)
            raw = fh.read(e.size)
            if len(raw) != e.size:
                raise CheckpointError(f"{path} is truncated: {name!r} needs bytes {e.offset}..{e.offset + e.size} "
                                      f"of a {os.path.getsize(path)}-byte file")
            if mask_crc(crc32c(raw)) != e.crc32c:
                raise CheckpointError(f"{path}: crc32c mismatch for {name!r} (the data file is corrupt)")
            out[name] = np.frombuffer(raw, dtype=e.dtype).reshape(e.shape).astype(e.dtype.newbyteorder("="))
    finally:
        for fh in handles.values():
            fh.close()
    return out

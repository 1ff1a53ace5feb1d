"""Cheap structural checks on container headers, before FFmpeg sees the bytes.

FFmpeg opens many truncated files without complaint (Matroska, AVI) and refuses others with a
generic "invalid data" (an MP4 cut before its ``moov`` box). The three container families we
see most declare their own sizes up front, so comparing the declared size with the real one
tells a truncated upload apart from bytes that were never a video, and gives the person a
code they can act on (upload the whole file again).
"""

from __future__ import annotations

from typing import BinaryIO

# Sizes that writers use to mean "unknown / until the end of the file".
_RIFF_UNKNOWN = {0, 0xFFFFFFFF}
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EBML_SEGMENT_ID = b"\x18\x53\x80\x67"
_ISO_BOX_TYPES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp"}
_MAX_ISO_BOXES = 10_000
# Top-level boxes that hold media: one of these cut short is lost video, even after a complete
# moov and mdat (a fragmented MP4 keeps its later samples in moof + mdat pairs).
_ISO_MEDIA_BOXES = {b"moov", b"mdat", b"moof"}


def find_truncation(fh: BinaryIO, *, size: int) -> str | None:
    """Return why the file looks truncated, or None when its headers fit its size.

    ``fh`` must be seekable; its position is left undefined. Files of unknown families
    return None (FFmpeg decides about them).
    """
    fh.seek(0)
    head = fh.read(16)
    if len(head) < 12:
        return None
    if head[:4] == b"RIFF":
        return _check_riff(fh, size=size)
    if head[:4] == _EBML_MAGIC:
        return _check_ebml(fh, size=size)
    if head[4:8] in _ISO_BOX_TYPES:
        return _check_iso_bmff(fh, size=size)
    return None


def _check_riff(fh: BinaryIO, *, size: int) -> str | None:
    """AVI/WAV: top-level RIFF chunks (AVI files over 1 GB chain ``RIFF AVIX`` chunks)."""
    pos = 0
    while pos + 8 <= size:
        fh.seek(pos)
        header = fh.read(8)
        if header[:4] != b"RIFF" or len(header) < 8:
            return None
        declared = int.from_bytes(header[4:8], "little")
        if declared in _RIFF_UNKNOWN:
            return None
        end = pos + 8 + declared
        if end > size:
            return f"RIFF chunk declares {end} bytes, file has {size}"
        pos = end + (declared & 1)  # chunks are padded to even sizes
    return None


def _read_ebml_vint(fh: BinaryIO, *, keep_marker: bool) -> tuple[int, bool] | None:
    """Read an EBML variable-length integer: (value, all_value_bits_set)."""
    first = fh.read(1)
    if not first:
        return None
    byte = first[0]
    length = 1
    mask = 0x80
    while length <= 8 and not byte & mask:
        mask >>= 1
        length += 1
    if length > 8:
        return None
    rest = fh.read(length - 1)
    if len(rest) != length - 1:
        return None
    value = byte if keep_marker else byte & (mask - 1)
    for b in rest:
        value = (value << 8) | b
    all_ones = not keep_marker and value == (1 << (7 * length)) - 1
    return value, all_ones


def _check_ebml(fh: BinaryIO, *, size: int) -> str | None:
    """Matroska/WebM: the EBML header, then the Segment element with its declared size."""
    fh.seek(4)
    header_size = _read_ebml_vint(fh, keep_marker=False)
    if header_size is None:
        return "EBML header cut short"
    fh.seek(fh.tell() + header_size[0])
    seg_id = fh.read(4)
    if len(seg_id) < 4:
        return "Matroska segment missing"
    if seg_id != _EBML_SEGMENT_ID:
        return None
    seg_size = _read_ebml_vint(fh, keep_marker=False)
    if seg_size is None:
        return "Matroska segment header cut short"
    value, unknown = seg_size
    if unknown:  # live-streamed files leave the size unknown
        return None
    end = fh.tell() + value
    if end > size:
        return f"Matroska segment declares {end} bytes, file has {size}"
    return None


def _check_iso_bmff(fh: BinaryIO, *, size: int) -> str | None:
    """MP4/MOV: walk the top-level boxes; a box that runs past the end means truncation.

    Bytes after a complete ``moov`` and ``mdat`` that do not fit as a box (too short for a
    header, or a size past the end) are stray bytes some tools append, not a cut file, unless
    they start a box that holds media: FFmpeg reads such files to their last frame.
    """
    pos = 0
    complete: set[bytes] = set()
    for _ in range(_MAX_ISO_BOXES):
        if pos >= size:
            return None
        fh.seek(pos)
        header = fh.read(16)
        kind = header[4:8]
        box_size: int | None = None
        if len(header) >= 8:
            box_size = int.from_bytes(header[:4], "big")
            if box_size == 1:
                box_size = int.from_bytes(header[8:16], "big") if len(header) >= 16 else None
            elif box_size == 0:  # "extends to the end of the file"
                return None
        if box_size is not None and box_size < 8:
            return None  # not a box structure we understand; FFmpeg decides
        if box_size is None or pos + box_size > size:
            if {b"moov", b"mdat"} <= complete and kind not in _ISO_MEDIA_BOXES:
                return None  # trailing garbage
            if box_size is None:
                return f"MP4 box header cut short at byte {pos}"
            return f"MP4 box {_box_name(kind)} declares {pos + box_size} bytes, file has {size}"
        complete.add(kind)
        pos += box_size
    return None


def _box_name(kind: bytes) -> str:
    """A box type fit for a message: ``'moov'``, or hex (``0x00ff6162``) when not printable."""
    if len(kind) == 4 and all(0x20 <= b < 0x7F for b in kind):
        return repr(kind.decode("ascii"))
    return "0x" + kind.hex()

"""Small crafted images that cost a decoder far more than their size says, one function each.

    python -m benchmarks.hostile_files OUT_DIR     # writes each one there, and prints its size

Each function returns the file's bytes, made here from nothing (no file is committed):

- :func:`tiff_tile_bomb`: a TIFF that declares 28x28 but holds one deflate-compressed tile of
  46336x46336 zeros (2.1 MB on the wire, 2 GiB once inflated);
- :func:`progressive_jpeg_scan_bomb`: a 6000x6000 progressive JPEG whose last scan is repeated
  400 times (165 KB; each repeat is one more pass over 36 M pixels);
- :func:`lossless_webp`: a 6000x6000 lossless WebP of a flat page (1.4 KB; 36 MP is under the
  40 MP MAX_IMAGE_PIXELS, so it is decoded);
- :func:`huge_png`: a real 12000x12000 1-bit PNG (a few KB), over MAX_IMAGE_PIXELS.
"""

import argparse
import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

_SHORT, _LONG = 3, 4  # TIFF field types
_ZEROS = bytes(1 << 20)


def _deflated_zeros(n: int) -> bytes:
    """zlib (TIFF's Adobe deflate) of ``n`` zero bytes, without holding or compressing them
    all: after a full flush, the deflate of 1 MiB more zeros is the same bytes every time."""
    z = zlib.compressobj(9, wbits=-15)  # raw deflate: the zlib header and checksum are ours
    first = z.compress(_ZEROS) + z.flush(zlib.Z_FULL_FLUSH)
    again = z.compress(_ZEROS) + z.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(n, len(_ZEROS))
    tail = z.compress(bytes(rest)) + z.flush()
    body = first + again * (whole - 1) + tail if whole else zlib.compress(bytes(n), 9)[2:-4]
    adler = (n % 65521) << 16 | 1  # Adler-32 of n zeros: a = 1, b = n
    return b"\x78\xda" + body + struct.pack(">I", adler)


def tiff_tile_bomb(tile: int = 46336, declared: int = 28) -> bytes:
    """A little-endian TIFF of ``declared`` x ``declared`` 8-bit grey pixels whose single tile
    is ``tile`` x ``tile`` (a multiple of 16), deflate-compressed zeros, written by hand."""
    if tile % 16:
        raise ValueError("TIFF tiles are multiples of 16 pixels")
    data = _deflated_zeros(tile * tile)
    entries = [
        (256, _LONG, declared),  # ImageWidth
        (257, _LONG, declared),  # ImageLength
        (258, _SHORT, 8),  # BitsPerSample
        (259, _SHORT, 8),  # Compression: Adobe deflate
        (262, _SHORT, 1),  # PhotometricInterpretation: BlackIsZero
        (277, _SHORT, 1),  # SamplesPerPixel
        (322, _LONG, tile),  # TileWidth
        (323, _LONG, tile),  # TileLength
        (324, _LONG, 0),  # TileOffsets: one tile, filled in below
        (325, _LONG, len(data)),  # TileByteCounts
    ]
    ifd_at = 8
    data_at = ifd_at + 2 + 12 * len(entries) + 4
    ifd = [struct.pack("<H", len(entries))]
    for tag, kind, value in entries:
        value = data_at if tag == 324 else value
        packed = struct.pack("<HH", value, 0) if kind == _SHORT else struct.pack("<I", value)
        ifd.append(struct.pack("<HHI", tag, kind, 1) + packed)
    ifd.append(struct.pack("<I", 0))  # no next IFD
    return b"II*\x00" + struct.pack("<I", ifd_at) + b"".join(ifd) + data


def _segments(jpeg: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each JPEG segment, a scan's entropy-coded data included."""
    out, i = [], 2  # after SOI
    while i < len(jpeg):
        if jpeg[i] != 0xFF:
            raise ValueError(f"no JPEG marker at byte {i}")
        marker = jpeg[i + 1]
        if marker == 0xD9:  # EOI
            out.append((marker, i, i + 2))
            return out
        end = i + 2 + int.from_bytes(jpeg[i + 2 : i + 4], "big")
        if marker == 0xDA:  # SOS: the scan runs to the next marker that is not data
            while not (jpeg[end] == 0xFF and jpeg[end + 1] not in (0x00, *range(0xD0, 0xD8))):
                end += 1
        out.append((marker, i, end))
        i = end
    raise ValueError("no EOI")


def _page(mode: str, size: int, stroke: int) -> Image.Image:
    """A flat light page, with a dark stroke ``stroke`` pixels wide across it unless 0."""
    page = Image.new(mode, (size, size), "#f0f0f0")
    if stroke:
        line = [(size // 3, size // 4), (size // 2, 3 * size // 4)]
        ImageDraw.Draw(page).line(line, "black", stroke)
    return page


def progressive_jpeg_scan_bomb(size: int = 6000, repeats: int = 400, stroke: int = 0) -> bytes:
    """A ``size`` x ``size`` progressive JPEG whose last scan comes ``repeats`` times more
    before the end: a decoder runs every one over the whole image. A flat page by default
    (165 KB: its last scan is 59 bytes); ``stroke`` draws a line, for a digit to find."""
    page = _page("L", size, stroke)
    buf = io.BytesIO()
    page.save(buf, "JPEG", progressive=True, quality=75)
    jpeg = buf.getvalue()
    segments = _segments(jpeg)
    _, last_start, last_end = [s for s in segments if s[0] == 0xDA][-1]
    eoi = segments[-1][1]
    return jpeg[:eoi] + jpeg[last_start:last_end] * repeats + jpeg[eoi:]


def lossless_webp(size: int = 6000, stroke: int = 0) -> bytes:
    """A ``size`` x ``size`` lossless WebP of a flat page (1,434 bytes; 2.5 KB with a
    ``stroke``) that decodes to ``size``² RGB pixels, and more on the way to a digit."""
    buf = io.BytesIO()
    _page("RGB", size, stroke).save(buf, "WEBP", lossless=True, quality=100, method=4)
    return buf.getvalue()


def huge_png(size: int = 12000) -> bytes:
    """A real ``size`` x ``size`` 1-bit PNG, all black: tiny on the wire, over the pixel cap."""
    buf = io.BytesIO()
    Image.new("1", (size, size), 0).save(buf, "PNG")
    return buf.getvalue()


FILES: dict[str, Callable[[], bytes]] = {
    "tile-bomb.tiff": tiff_tile_bomb,
    "scan-bomb.jpg": progressive_jpeg_scan_bomb,
    "lossless-6000.webp": lossless_webp,
    "huge-12000.png": huge_png,
}


def main(argv: list[str] | None = None) -> None:
    """Write every file into a folder and print its size."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in FILES.items():
        data = make()
        (args.out / name).write_bytes(data)
        print(f"{name}: {len(data):,} bytes")


if __name__ == "__main__":
    main()

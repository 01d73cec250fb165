"""Upload bytes -> a decoded image, within limits: an allow-list of formats, the pixels an
image declares (checked from its header, before any pixel is decoded), EXIF orientation, and
JPEG photos decoded at a reduced scale."""

import math
import struct
import warnings
from dataclasses import dataclass
from io import BytesIO

from PIL import Image, ImageOps, UnidentifiedImageError

from app.config import Settings
from app.digits.sizes import PAGE_SIDE
from app.failures import Failure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_FORMATS: frozenset[str] = frozenset({"PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"})
TOO_LARGE = Failure.IMAGE_TOO_LARGE
# Progressive JPEGs carry about 10 scans (libjpeg's and mozjpeg's scripts); each costs a pass
# over every coefficient, so hundreds of them turn 165 KB into seconds of CPU.
MAX_JPEG_SCANS = 64
TIFF_MIN_TILE = 1024 * 1024  # a tile may exceed a small image up to this many pixels
# libwebp decodes to RGBA, and Pillow copies it out: measured ~9 bytes per pixel at the peak.
WEBP_BYTES_PER_PIXEL = 9
_ORIENTATION = 0x0112  # EXIF tag
# Our header check (ImageLimits.max_pixels, 40 M by default) refuses what Pillow would warn
# about (89 M) before any pixel is decoded: its warning would only repeat that in the log.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageRejected(Exception):
    """An upload we refuse, and which failure it is (an invalid image, or one too large)."""

    def __init__(self, detail: str, failure: Failure = Failure.INVALID_IMAGE) -> None:
        super().__init__(detail)
        self.detail, self.failure = detail, failure


@dataclass(frozen=True)
class ImageLimits:
    """What decode_image accepts: pixel count (checked from the header) and Pillow formats."""

    max_pixels: int = Settings.model_fields["max_image_pixels"].default
    max_decode_bytes: int = Settings.model_fields["decode_memory_mb"].default << 20
    allowed_formats: frozenset[str] = DEFAULT_FORMATS


def blank() -> ImageRejected:
    return ImageRejected("no digit found: the image is blank")


def check_pixels(width: int, height: int, limits: ImageLimits) -> None:
    """413 for an image whose header declares more than ``limits.max_pixels`` pixels."""
    if width * height > limits.max_pixels:
        declared = f"image declares {width}x{height} = {width * height:,} pixels"
        raise ImageRejected(f"{declared}; the limit is {limits.max_pixels:,}", TOO_LARGE)


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR, or None when ``data`` is no PNG."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 24:
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return width, height


def jpeg_scans(data: bytes) -> int:
    """The number of scans (SOS markers) of a JPEG's image, not counting an EXIF thumbnail's.

    Entropy-coded data escapes 0xFF as 0xFF00, so 0xFFDA after the first frame header is always
    a marker; the segments before that header (APPn: EXIF, ICC) are skipped by their lengths."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            return data.count(b"\xff\xda", pos)
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return data.count(b"\xff\xda", pos)


def check_memory(needed: int, limits: ImageLimits) -> None:
    """413 for an image whose decoding needs more memory than ``limits.max_decode_bytes``."""
    if needed > limits.max_decode_bytes:
        raise ImageRejected(
            f"decoding the image needs about {needed >> 20} MB; the limit is "
            f"{limits.max_decode_bytes >> 20} MB (DECODE_MEMORY_MB)",
            TOO_LARGE,
        )


def check_work(img: Image.Image, data: bytes) -> None:
    """Refuse, before decoding, a file whose decoder would do far more than its declared size
    says: a TIFF tile or strip bigger than the image (decoded whole before it is cropped), a
    JPEG whose scans make the decoder go over every coefficient hundreds of times."""
    w, h = img.size
    if img.format == "TIFF":
        tags = img.tag_v2  # type: ignore[attr-defined]
        tw, th = tags.get(322, w), tags.get(323, tags.get(278, h))
        if int(tw) * int(min(th, 1 << 31)) > max(w * h, TIFF_MIN_TILE):
            raise ImageRejected(
                f"TIFF tiles of {tw}x{th} for a {w}x{h} image: the decoder would unpack "
                "far more than the image holds",
                TOO_LARGE,
            )
    elif img.format == "JPEG" and (scans := jpeg_scans(data)) > MAX_JPEG_SCANS:
        raise ImageRejected(
            f"JPEG with {scans} scans (at most {MAX_JPEG_SCANS}): each scan passes over the whole "
            "image",
            TOO_LARGE,
        )


def webp_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a WebP's first chunk (VP8X canvas, VP8L or VP8 frame), or None.

    Pillow decodes a WebP whole as it opens it, so its size must be known before."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack_from("<HH", data, 26)
        return w & 0x3FFF, h & 0x3FFF
    return None


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decode bytes with Pillow from the allow-list; first frame; EXIF orientation applied."""
    if not data:
        raise ImageRejected("empty upload: the file has 0 bytes")
    if (size := png_size(data) or webp_size(data)) is not None:  # before Pillow opens it
        check_pixels(*size, limits)
        if data[:4] == b"RIFF":
            check_memory(size[0] * size[1] * WEBP_BYTES_PER_PIXEL, limits)
    allowed = ", ".join(sorted(limits.allowed_formats))
    try:
        img: Image.Image = Image.open(BytesIO(data))  # lazy: reads the header only
    except MemoryError:  # some plugins decode as they open (WebP)
        raise ImageRejected(
            "the image needs more memory to decode than allowed", TOO_LARGE
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        detail = f"image too large to decode; the limit is {limits.max_pixels:,} pixels"
        raise ImageRejected(detail, TOO_LARGE) from exc
    except UnidentifiedImageError:
        pdf = data.lstrip()[:5] == b"%PDF-"  # Pillow only writes PDF: name it rather than shrug
        what = "format PDF not allowed" if pdf else "not a recognised image"
        raise ImageRejected(f"{what} (allowed formats: {allowed})") from None
    except Exception:  # a plugin choking on a malformed header
        raise ImageRejected("could not decode the image (a malformed header)") from None
    fmt = img.format or "unknown"
    if fmt not in limits.allowed_formats:
        raise ImageRejected(f"format {fmt} not allowed (allowed formats: {allowed})")
    check_pixels(*img.size, limits)
    check_work(img, data)
    if fmt == "JPEG" and min(img.size) >= 2 * PAGE_SIDE:
        # A photo: the decoder scales by 1/2 to 1/8 as it decodes, luminance only, for almost
        # nothing (app/digits/page.py reads pages at PAGE_SIDE anyway).
        f = PAGE_SIDE / min(img.size)
        img.draft("L", (math.ceil(img.width * f), math.ceil(img.height * f)))
    try:
        img.load()  # multi-frame files (GIF, WebP, TIFF) open positioned on frame 0
    except MemoryError:
        raise ImageRejected(
            f"the {fmt} image needs more memory to decode than allowed", TOO_LARGE
        ) from None
    except Exception:  # truncated / corrupt data surfaces as OSError, SyntaxError, ...
        raise ImageRejected(f"could not decode the {fmt} image (corrupt or truncated)") from None
    try:
        if img.getexif().get(_ORIENTATION, 1) in range(2, 9):
            img = ImageOps.exif_transpose(img)
    except Exception:  # a corrupt EXIF block must not sink good pixels: keep them unrotated
        pass
    return img

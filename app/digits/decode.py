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
from app.failures import Failure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_FORMATS: frozenset[str] = frozenset({"PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"})
PAGE_SIDE = 300  # photos are read at this size (shorter side): no need to decode them bigger
TOO_LARGE = Failure.IMAGE_TOO_LARGE
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


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decode bytes with Pillow from the allow-list; first frame; EXIF orientation applied."""
    if not data:
        raise ImageRejected("empty upload: the file has 0 bytes")
    if (size := png_size(data)) is not None:  # before Pillow's own, coarser, bomb guard
        check_pixels(*size, limits)
    allowed = ", ".join(sorted(limits.allowed_formats))
    try:
        img: Image.Image = Image.open(BytesIO(data))  # lazy: reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        detail = f"image too large to decode; the limit is {limits.max_pixels:,} pixels"
        raise ImageRejected(detail, TOO_LARGE) from exc
    except UnidentifiedImageError:
        pdf = data.lstrip()[:5] == b"%PDF-"  # Pillow only writes PDF: name it rather than shrug
        what = "format PDF not allowed" if pdf else "not a recognised image"
        raise ImageRejected(f"{what} (allowed formats: {allowed})") from None
    except Exception as exc:  # a plugin choking on a malformed header
        raise ImageRejected(f"could not decode the image: {exc}") from exc
    fmt = img.format or "unknown"
    if fmt not in limits.allowed_formats:
        raise ImageRejected(f"format {fmt} not allowed (allowed formats: {allowed})")
    check_pixels(*img.size, limits)
    if fmt == "JPEG" and min(img.size) >= 2 * PAGE_SIDE:
        # A photo: the decoder scales by 1/2 to 1/8 as it decodes, luminance only, for almost
        # nothing (app/digits/page.py reads pages at PAGE_SIDE anyway).
        f = PAGE_SIDE / min(img.size)
        img.draft("L", (math.ceil(img.width * f), math.ceil(img.height * f)))
    try:
        img.load()  # multi-frame files (GIF, WebP, TIFF) open positioned on frame 0
    except Exception as exc:  # truncated / corrupt data surfaces as OSError, SyntaxError, ...
        raise ImageRejected(f"could not decode the {fmt} image: {exc}") from exc
    try:
        if img.getexif().get(_ORIENTATION, 1) in range(2, 9):
            img = ImageOps.exif_transpose(img)
    except Exception:  # a corrupt EXIF block must not sink good pixels: keep them unrotated
        pass
    return img

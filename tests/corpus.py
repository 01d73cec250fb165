"""A corpus of bad and odd uploads, each with the answer the service must give."""

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from tests.helpers import png

Request = dict[str, Any]  # keyword arguments of TestClient.request, plus "method" and "url"


@dataclass
class Case:
    """One input: how to send it, the status it gets, and the label when it is a real digit."""

    name: str
    build: Callable[[np.ndarray], Request]
    status: int
    label: str | None = None
    detail: str | None = None  # a fragment the problem detail must contain
    extra: dict[str, Any] = field(default_factory=dict)


def encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    """Pillow image -> bytes in ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height (8-bit grey) with one tiny IDAT: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def gif_header(width: int, height: int) -> bytes:
    """A real 1x1 GIF whose logical screen and frame claim width x height."""
    gif = bytearray(encode(Image.new("L", (1, 1)), "GIF"))
    gif[6:10] = struct.pack("<HH", width, height)  # logical screen
    frame = gif.index(b"\x2c")  # image descriptor: ',' x y w h
    gif[frame + 5 : frame + 9] = struct.pack("<HH", width, height)
    return bytes(gif)


def _files(data: bytes, name: str = "digit.png", ctype: str = "image/png") -> Request:
    return {
        "method": "POST",
        "url": "/predict/mnist_cnn",
        "files": [("files", (name, data, ctype))],
    }


def _img(fn: Callable[[np.ndarray], Image.Image], fmt: str = "PNG", **kw: Any) -> Callable:
    return lambda d: _files(encode(fn(d), fmt, **kw), f"digit.{fmt.lower()}")


def _paper(d: np.ndarray) -> Image.Image:  # dark ink on a big white page, off-centre
    page = Image.new("L", (800, 600), 245)
    page.paste(ImageOps.invert(Image.fromarray(d)).resize((240, 240), Image.BICUBIC), (90, 300))
    return page


def _rgba_canvas(d: np.ndarray) -> Image.Image:  # black strokes on transparent, RGB 0 everywhere
    big = np.array(Image.fromarray(d).resize((400, 400), Image.BICUBIC))
    rgba = np.zeros((400, 400, 4), np.uint8)
    rgba[..., 3] = big
    return Image.fromarray(rgba, "RGBA")


def _la(d: np.ndarray) -> Image.Image:  # white ink whose alpha is the ink itself
    return Image.fromarray(np.stack([np.full_like(d, 255), d], -1), "LA")


def _p_transparent(d: np.ndarray) -> Image.Image:
    img = ImageOps.invert(Image.fromarray(d)).convert("P")
    img.info["transparency"] = 255  # the white page is transparent
    return img


def _sixteen_bit(d: np.ndarray) -> Image.Image:  # full 16-bit range: clipping at 255 would saturate
    return Image.fromarray(d.astype(np.uint16) * 257)


def _cmyk(d: np.ndarray) -> Image.Image:
    return ImageOps.invert(Image.fromarray(d)).convert("RGB").resize((112, 112)).convert("CMYK")


def _exif_rotated(d: np.ndarray) -> Callable:
    raw = Image.fromarray(d).resize((112, 112)).rotate(90, expand=True)  # stored turned left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": undoes the turn
    return lambda _: _files(encode(raw, "JPEG", exif=exif.tobytes(), quality=95), "phone.jpg")


def _animated(d: np.ndarray) -> Request:
    first, second = Image.fromarray(d), Image.fromarray(np.rot90(d).copy())
    buf = io.BytesIO()
    first.save(buf, format="GIF", save_all=True, append_images=[second], duration=100, loop=0)
    return _files(buf.getvalue(), "anim.gif", "image/gif")


def _wide_strip(d: np.ndarray) -> Image.Image:  # extreme aspect ratio: 2000 x 28
    strip = np.zeros((28, 2000), np.uint8)
    strip[:, 986:1014] = d
    return Image.fromarray(strip)


def _real_huge(_: np.ndarray) -> Request:  # 12000 x 12000 real pixels, 1 bit: tiny on the wire
    return _files(encode(Image.new("1", (12000, 12000), 0), "PNG"), "huge.png")


def _multipart(body: bytes, boundary: str | None = "b0undary") -> Request:
    ctype = "multipart/form-data" + (f"; boundary={boundary}" if boundary else "")
    return {
        "method": "POST",
        "url": "/predict/mnist_cnn",
        "content": body,
        "headers": {"content-type": ctype},
    }


def cases(digit_label: str) -> list[Case]:
    """The corpus; real digits are built from one MNIST digit whose label is ``digit_label``."""
    lab = digit_label
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><text>7</text></svg>'
    return [
        Case("mnist png", _img(Image.fromarray), 200, lab),
        Case("empty file", lambda d: _files(b""), 422, detail="0 bytes"),
        Case(
            "text named .png",
            lambda d: _files(b"hello, I am text"),
            422,
            detail="not a recognised image",
        ),
        Case("truncated png", lambda d: _files(encode(_paper(d), "PNG")[:300]), 422),
        Case(
            "png bomb 60000x60000", lambda d: _files(png_header(60000, 60000)), 413, detail="pixels"
        ),
        Case("gif bomb 65535x65535", lambda d: _files(gif_header(65535, 65535), "b.gif"), 413),
        Case("real 12000x12000 png", _real_huge, 413, detail="12000x12000"),
        Case("oversize body", lambda d: _files(b"\0" * (3 * 1024 * 1024)), 413),
        Case(
            "too many files",
            lambda d: {
                "method": "POST",
                "url": "/predict/mnist_cnn",
                "files": [("files", (f"{i}.png", png(d))) for i in range(17)],
            },
            422,
            detail="too many files",
        ),
        Case(
            "wrong field name",
            lambda d: {
                "method": "POST",
                "url": "/predict/mnist_cnn",
                "files": [("file", ("d.png", png(d)))],
            },
            422,
            detail="parts named 'files'",
        ),
        Case("no parts", lambda d: _multipart(b"--b0undary--\r\n"), 422),
        Case("broken multipart", lambda d: _multipart(b"garbage", boundary=None), 400),
        Case(
            "json body",
            lambda d: {
                "method": "POST",
                "url": "/predict/mnist_cnn",
                "json": {"image": "base64..."},
            },
            415,
        ),
        Case(
            "text body",
            lambda d: {
                "method": "POST",
                "url": "/predict/mnist_cnn",
                "content": b"7",
                "headers": {"content-type": "text/plain"},
            },
            415,
        ),
        Case("svg", lambda d: _files(svg, "seven.svg", "image/svg+xml"), 422),
        Case(
            "pdf",
            lambda d: _files(encode(Image.fromarray(d).convert("RGB"), "PDF"), "d.pdf"),
            422,
            detail="PDF",
        ),
        Case(
            "ico", lambda d: _files(encode(Image.fromarray(d), "ICO"), "d.ico"), 422, detail="ICO"
        ),
        Case("animated gif", _animated, 200, lab),
        Case("16-bit png", _img(_sixteen_bit), 200, lab),
        Case("cmyk jpeg", _img(_cmyk, "JPEG", quality=95), 200, lab),
        Case("exif-rotated jpeg", lambda d: _exif_rotated(d)(d), 200, lab),
        Case("LA transparency", _img(_la), 200, lab),
        Case("P transparency", _img(_p_transparent), 200, lab),
        Case("RGBA canvas export", _img(_rgba_canvas), 200, lab),
        Case("tiff", _img(lambda d: Image.fromarray(d), "TIFF"), 200, lab),
        Case("bmp", _img(lambda d: Image.fromarray(d).convert("RGB"), "BMP"), 200, lab),
        Case("webp", _img(lambda d: Image.fromarray(d), "WEBP", lossless=True), 200, lab),
        Case("1-bit png", _img(lambda d: Image.fromarray(d).convert("1")), 200, lab),
        Case("dark ink on white page jpeg", _img(_paper, "JPEG", quality=70), 200, lab),
        Case("extreme aspect ratio", _img(_wide_strip), 200, lab),
        Case("hairline strip", _img(lambda d: Image.new("L", (4000, 2), 255)), 422),
        Case("blank white", _img(lambda d: Image.new("L", (64, 64), 255)), 422, detail="blank"),
        Case("blank black", _img(lambda d: Image.new("L", (28, 28), 0)), 422, detail="blank"),
        Case(
            "huge filename",
            lambda d: _files(png(d), "x" * 4000),
            200,
            lab,
            extra={"filename": "x" * 255 + "..."},
        ),
        Case(
            "filename past the part-header limit",
            lambda d: _files(png(d), "x" * 10_000),
            400,
            detail="multipart",
        ),
        Case(
            "unicode filename",
            lambda d: _files(png(d), "цифра-семь-✓-数字.png"),
            200,
            lab,
            extra={"filename": "цифра-семь-✓-数字.png"},
        ),
        Case(
            "top_k=0",
            lambda d: {**_files(png(d)), "params": {"top_k": "0"}},
            422,
        ),
        Case(
            "top_k=11",
            lambda d: {**_files(png(d)), "params": {"top_k": "11"}},
            422,
        ),
        Case(
            "top_k=seven",
            lambda d: {**_files(png(d)), "params": {"top_k": "seven"}},
            422,
        ),
        Case(
            "unknown model",
            lambda d: {**_files(b"x"), "url": "/predict/resnet50"},
            404,
            detail="known models",
        ),
        Case(
            "malformed model name",
            lambda d: {**_files(b"x"), "url": "/predict/%2e%2e%2f%00" + "z" * 300},
            404,
        ),
        Case("GET predict", lambda d: {"method": "GET", "url": "/predict/mnist_cnn"}, 405),
        Case("DELETE models", lambda d: {"method": "DELETE", "url": "/models/mnist_cnn"}, 405),
    ]

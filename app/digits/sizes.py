"""The sizes that decide which way an upload is read, in one place (pixels; a side is the
shorter one unless it says otherwise)."""

from models.framing import FRAME

# A request whose images are all small plain greyscale PNGs, this many pixels in all at most,
# is read on the event loop (tens of microseconds each); any other goes to the decoder process.
INLINE_PIXELS = 256 * FRAME * FRAME
# Bigger uploads (longer side) are box-averaged down first, so a step's cost stays bounded.
WORK_MAX_SIDE = 512
# Frames this big are photos or pages (app/digits/page.py), not crops (app/digits/ink.py).
PHOTO_MIN_SIDE = 200
# Smaller crops are digits, never a photographed page: no paper plane, no page reading.
PLANE_MIN_SIDE = 64
# Photos are read at this size: a JPEG is decoded no bigger (its DCT scaling), nor a page.
PAGE_SIDE = 240

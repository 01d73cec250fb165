"""The MNIST definition of a digit, shared by training (augment) and the service (preprocessing).

MNIST digits are white ink on black in a FRAME x FRAME image, size-normalised so the digit's box
is BOX pixels on its longer side (anti-aliased) and centred by centre of mass.
"""

DIGIT_LABELS = [str(d) for d in range(10)]  # a digit model's classes, in output order
FRAME = 28  # the digit image is FRAME x FRAME
DIGIT_SHAPE = (FRAME, FRAME)
BOX = 20  # the digit's box is scaled to this many pixels on its longer side
# Measured on the 10,000 MNIST test digits: every centre of mass lies in [13.5, 14.5] (0-based
# pixel index), so placing the COM at round(14.0) moves none of them.
COM_TARGET = 14.0
# MNIST digits span their BOX with ink above 0.1 (99.96% of test digits), so that is where the
# box is measured: fainter halos (resampling, JPEG ringing) may spill past it.
TIGHT = 0.1
FULL_SCALE = 0.95  # ink peaking above this is left as is (MNIST peaks at 254-255, not 255 always)

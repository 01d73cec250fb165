"""Pen strokes traced from MNIST digits: thin the digit to a skeleton, walk it into polylines.

So a browser test can draw a real handwritten digit with the mouse, the way a person would.
"""

import numpy as np

# The 8 neighbours of a pixel, clockwise from north (Zhang-Suen's P2..P9).
_RING = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]


def _neighbours(img: np.ndarray) -> list[np.ndarray]:
    p = np.pad(img, 1)
    h, w = img.shape
    return [p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in _RING]


def skeleton(digit: np.ndarray, level: int = 100) -> np.ndarray:
    """Zhang-Suen thinning of ``digit > level``: a one-pixel-wide boolean skeleton."""
    img = (digit > level).astype(np.uint8)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            n = _neighbours(img)
            count = sum(n)
            transitions = sum(
                ((n[i] == 0) & (n[(i + 1) % 8] == 1)).astype(np.uint8) for i in range(8)
            )
            p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
            if step == 0:
                a, b = p2 * p4 * p6, p4 * p6 * p8
            else:
                a, b = p2 * p4 * p8, p2 * p6 * p8
            remove = (img == 1) & (count >= 2) & (count <= 6) & (transitions == 1)
            remove &= (a == 0) & (b == 0)
            if remove.any():
                img[remove] = 0
                changed = True
    return img.astype(bool)


def polylines(digit: np.ndarray) -> list[list[tuple[int, int]]]:
    """The skeleton as strokes of (x, y) pixel positions, each a path a pen could follow."""
    sk = skeleton(digit)
    todo = {(int(y), int(x)) for y, x in zip(*np.nonzero(sk), strict=True)}

    def around(p: tuple[int, int]) -> list[tuple[int, int]]:
        return [(p[0] + dy, p[1] + dx) for dy, dx in _RING if (p[0] + dy, p[1] + dx) in todo]

    strokes = []
    while todo:
        # Start at an end of a line when there is one (a pixel with one neighbour left).
        start = min(todo, key=lambda p: (len(around(p)), p))
        path = [start]
        todo.discard(start)
        while nxt := around(path[-1]):
            # Prefer straight-on neighbours (4-connected) so the pen follows the stroke.
            step = min(nxt, key=lambda q: abs(q[0] - path[-1][0]) + abs(q[1] - path[-1][1]))
            path.append(step)
            todo.discard(step)
        if len(path) > 1:
            strokes.append([(x, y) for y, x in path])
    return strokes

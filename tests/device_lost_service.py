"""``python -m app`` whose models lose their device on any batch of exactly 3 images.

Run it as a script (``python tests/device_lost_service.py``, with the repository on PYTHONPATH):
multiprocessing's spawn imports it again as the main module of the model owner and of uvicorn's
workers, so the patch holds wherever the models run. Warm-up never makes a batch of 3 (it runs
powers of two on CUDA, 1 and MAX_BATCH_SIZE on the CPU), and neither does a lone 1-image request.

FAULT=lost raises DeviceLost (what the predictor makes of a poisoned CUDA context: the CPU cannot
lose its device); FAULT=cuda makes a real one, an out-of-bounds index on the GPU (a device-side
assert), for the predictor to find; FAULT=hang launches a batch that never completes (a hung
GPU), with the watchdog on (it is on CUDA only) at a deadline of 2 s.
"""

import os
import sys
import threading

import torch
from torch import Tensor

from app.engine import host, predictor
from app.engine.batching import DeviceLost, Pending

_launch = predictor.Predictor.launch


class Hung:
    """A batch the device never finishes."""

    def wait(self) -> Tensor:
        threading.Event().wait()
        raise AssertionError("unreachable")


def launch(self: predictor.Predictor, digits: Tensor) -> Tensor | Pending:
    """The real launch, after a fatal fault when the batch holds 3 images."""
    if digits.shape[0] == 3:
        if os.environ.get("FAULT") == "cuda":
            with predictor._device_errors(self.device):  # what launch and wait classify
                values = torch.zeros(4, device=self.device)
                values[torch.tensor([1 << 30], device=self.device)] += 1  # asserts on the GPU
                torch.cuda.synchronize(self.device)
        elif os.environ.get("FAULT") == "hang":
            return Hung()
        else:
            raise DeviceLost(f"{self.device} can run nothing more (FAULT=lost)")
    return _launch(self, digits)


predictor.Predictor.launch = launch  # type: ignore[method-assign]
if os.environ.get("FAULT") == "hang":
    host.watchdog_s = lambda settings, device: 2.0

if __name__ == "__main__":
    from app.__main__ import main

    sys.exit(main())

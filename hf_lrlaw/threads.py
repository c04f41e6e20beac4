"""BLAS threads for the small linear algebra of fits and rankings."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from threadpoolctl import ThreadpoolController

__all__ = ["numpy_blas_single_thread"]


def numpy_blas_single_thread() -> AbstractContextManager[Any]:
    """numpy's and scipy's BLAS limited to one thread while the context is open.

    A fit's matrices are tiny: BLAS threads only add latency (4x slower measured on 2 busy
    cores). torch's BLAS is left alone: it may be training in another thread of this process.
    """
    controller = ThreadpoolController()
    ours = [
        lib.filepath
        for lib in controller.lib_controllers
        if lib.user_api == "blas" and any(k in lib.filepath for k in ("numpy", "scipy"))
    ]
    return controller.select(filepath=ours).limit(limits=1)

"""`shapes_only()`: build modules on the meta device (shapes, no memory) without running their
initialisers.

Why not `with torch.device("meta")` alone: on meta tensors torch runs in-place random fills
(`normal_`, ...) through Python reference kernels that import `torch._dynamo` on first use,
about 1.1 s of every process that only wanted shapes (a checkpoint's shape check, a parameter
count). A meta tensor holds no values, so its fills can be skipped outright.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode


class _SkipFillsOnMeta(TorchFunctionMode):
    """In-place calls (`torch.nn.init.normal_`, `Tensor.uniform_`, ...) on a meta tensor return
    it untouched; every other call runs as usual."""

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        # torch.nn.init's functions pass their tensor by keyword to the modes.
        target = args[0] if args else kwargs.get("tensor")
        in_place = name.endswith("_") and not name.endswith("__")
        if in_place and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        return func(*args, **kwargs)


@contextmanager
def shapes_only() -> Iterator[None]:
    """Modules built inside have their shapes and no memory, and cost no initialisation."""
    with torch.device("meta"), _SkipFillsOnMeta():
        yield

"""The contract's unsigned integer ranges, and a flag type that keeps a number within one."""

from __future__ import annotations

import argparse
from collections.abc import Callable

UINT32_MAX = 2**32 - 1  # ListTasks limit and offset
UINT64_MAX = 2**64 - 1  # versions and sequences


def up_to(maximum: int) -> Callable[[str], int]:
    """An argparse type: a whole number from 0 to `maximum`."""

    def parse(text: str) -> int:
        value = int(text)
        if not 0 <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be 0 to {maximum}, got {value}")
        return value

    return parse

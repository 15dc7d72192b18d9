"""The built-in venue simulator: TickDB's protocol plus the sequence extension, with faults.

See docs/protocol.md for the wire protocol and the fault knobs.

Names are imported on first use: every ``fastfeed`` command builds its parser from
``add_sim_arguments``, and loading the server (picows, asyncio) for that would cost each start
about 100 ms (``python -X importtime -m fastfeed --help``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastfeed.sim.config import SimConfig, add_sim_arguments, sim_config_from_args
    from fastfeed.sim.content import message
    from fastfeed.sim.faults import GARBAGE_KINDS, FaultPlan
    from fastfeed.sim.server import PATH, SimServer, main_sim, serve

__all__ = [
    "GARBAGE_KINDS",
    "PATH",
    "FaultPlan",
    "SimConfig",
    "SimServer",
    "add_sim_arguments",
    "main_sim",
    "message",
    "serve",
    "sim_config_from_args",
]

_MODULE_OF = {
    "GARBAGE_KINDS": "faults",
    "PATH": "server",
    "FaultPlan": "faults",
    "SimConfig": "config",
    "SimServer": "server",
    "add_sim_arguments": "config",
    "main_sim": "server",
    "message": "content",
    "serve": "server",
    "sim_config_from_args": "config",
}


def __getattr__(name: str) -> object:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)

"""The built-in venue simulator: TickDB's protocol plus the sequence extension, with faults.

See docs/protocol.md for the wire protocol and the fault knobs.
"""

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

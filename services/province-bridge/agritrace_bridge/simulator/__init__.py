"""A provincial platform simulator speaking the contract (docs/provincial-contract.md), for
tests, the demo and conformance runs: generated subjects and production records, a store of
pushed national records, exchanged-token verification and switchable faults.

    python -m agritrace_bridge simulate --province 37 --subjects 50000 --seed 1 --port 0
"""

from agritrace_bridge.simulator.data import SubjectGenerator
from agritrace_bridge.simulator.platform import Faults, FaultsPatch, SimulatedPlatform
from agritrace_bridge.simulator.server import SimulatorServer

__all__ = ["Faults", "FaultsPatch", "SimulatedPlatform", "SimulatorServer", "SubjectGenerator"]

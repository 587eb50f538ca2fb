"""`parity demo`: the whole product on the built-in emulator, every number labelled simulated."""

from parity.demo.bill import Bill, bill
from parity.demo.pipeline import DemoSize, Recorded
from parity.demo.run import DemoContext, run_demo

__all__ = ["Bill", "DemoContext", "DemoSize", "Recorded", "bill", "run_demo"]

"""netc from Python: crossbar arrays solved at circuit level with numpy arrays in and out, and the
netc commands (solve, compile, train, evaluate) returning what the CLI reports, as dicts.

Errors netc reports are raised as :class:`NetcError` with netc's own located message; arrays of the
wrong shape raise ``ValueError`` and of the wrong dtype ``TypeError``. See docs/python.md.
"""

from ._netc import Crossbar, NetcError, __version__, compile, evaluate, solve, train

# Chips (`netc.Chip.load(dir)`, arrays as numpy arrays) and `Crossbar.program` come with the chip
# and device issues; they will be re-exported here.

__all__ = ["Crossbar", "NetcError", "compile", "evaluate", "solve", "train", "__version__"]

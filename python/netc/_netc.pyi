"""Type stubs of the native module `netc._netc` (re-exported by `netc`)."""

import os
from typing import Any, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

StrPath = Union[str, "os.PathLike[str]"]
F64Array = npt.NDArray[np.float64]

class NetcError(Exception):
    """An error netc reports; the message is netc's own (``file:line:col`` and a caret under the
    offending text where there is source text)."""

def solve(source: StrPath, /) -> dict[str, Any]:
    """Solve a netlist's analyses (``.op``, ``.dc``); returns what ``netc solve --json`` prints:
    ``{"analyses": [{"type": "op", "values": {"v(in)": 1.0, "i(v1)": ...}}, ...]}``.

    ``source`` is a path, or (a str holding a newline) the netlist text itself, first line the
    title. Front-end warnings become ``UserWarning``s. Raises :class:`NetcError`."""

def compile(
    net_path: StrPath,
    *,
    weights: Optional[StrPath] = None,
    out: Optional[StrPath] = None,
    whole: bool = False,
) -> dict[str, Any]:
    """Map a ``.net`` network onto crossbar arrays; returns what ``mapping.json`` holds (the
    mapping report under ``"report"``, network, hardware, lowering, encoders, ...). Nothing is
    written without ``out``; with it, as ``netc compile NET -o OUT [--whole]``."""

def train(net_path: Optional[StrPath] = None, **options: Any) -> dict[str, Any]:
    """Train as ``netc train`` does; ``options`` are its flags as keywords (``preset``,
    ``backend``, ``epochs``, ``seed``, ``batch_size``, ``lr``, ``lr_decay``, ``out``, ``resume``,
    ``data_dir``, ``limit_train``, ``limit_test``, ``g_min``, ``g_max``, ``levels``, ``rw``,
    ``exact_nonlinear``, ``quiet`` (default True)). Writes ``model.json``, ``metrics.json``, ... into
    ``out`` (default ``runs/<name>``); returns ``{"network", "finished", "metrics": [{"epoch",
    "loss", "train_acc", "test_acc", "seconds"}, ...], "out_dir", "model", "compiler_weights"}``."""

def evaluate(
    net_path: Optional[StrPath] = None,
    *,
    weights: StrPath,
    backend: Literal["ideal", "encoded", "circuit"] = "ideal",
    out: Optional[StrPath] = None,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate trained weights (``model.json``) with one backend as ``netc eval`` does; returns
    that backend's ``eval.json`` entry ``{"backend", "accuracy", "loss", "samples",
    "confusion"}``. Other options are ``netc eval``'s flags as keywords (``preset``, ``data_dir``,
    ``limit_test``, ``g_min``, ``g_max``, ``levels``, ``rw``, ``exact_nonlinear``). Writes files
    only into ``out`` when given."""

class Crossbar:
    """An R×C crossbar array solved at circuit level (the circuit badcrossbar solves, plus cells,
    driver/sense resistances and amplifiers). Rows are inputs (word lines), columns outputs (bit
    lines); cell (i, j) has conductance ``g[i, j]`` (S)."""

    def __init__(
        self,
        g: F64Array,
        *,
        r_wire: float = 0.0,
        r_word: Optional[float] = None,
        r_bit: Optional[float] = None,
        r_driver: float = 0.0,
        r_sense: float = 0.0,
        cell: Literal["passive", "sinh", "1t1r"] = "passive",
        k: float = 2.0,
        v_gate: Union[float, Sequence[float], None] = None,
        mos: Optional[dict[str, float]] = None,
        tia: Optional[Tuple[float, float, float]] = None,
        solver: Literal["auto", "direct", "cg"] = "auto",
        tol: float = 1e-10,
        max_iter: int = 20000,
    ) -> None:
        """``g``: (rows, cols) float64 conductances (S). ``r_wire``: segment resistance of word and
        bit lines (Ω), overridden per family by ``r_word``/``r_bit``; ``r_driver``/``r_sense``:
        driver output and sense input resistance (Ω). ``cell``: "passive" (I = g·V), "sinh"
        (I = g·sinh(k·V)/k) or "1t1r" (memristor + level-1 NMOS; ``v_gate`` one value or one per
        row, default 3 V; ``mos``: {vto, kp, lambda, gamma, phi, w, l}). ``tia``: (gain, R_f Ω,
        vsat V) transimpedance sensing instead of ideal virtual grounds. ``solver``: as ``netc
        xbar --solver``."""

    @property
    def rows(self) -> int: ...
    @property
    def cols(self) -> int: ...
    @property
    def shape(self) -> Tuple[int, int]: ...
    @property
    def cell(self) -> str: ...
    @property
    def g(self) -> F64Array:
        """The conductances (S), a (rows, cols) copy."""

    def infer(self, v: F64Array, *, out: Optional[F64Array] = None) -> F64Array:
        """Outputs for input vectors ``v`` (n, rows) volts → (n, cols): amperes into the virtual
        grounds, or the amplifiers' volts; a 1-D ``v`` (rows,) gives (cols,). C-contiguous float64
        input is read in place; ``out`` (n, cols, C-contiguous float64) is written and returned.
        Runs without the interpreter lock."""

    def effective_weights(self) -> F64Array:
        """The exact effective weight matrix ``T`` (rows, cols): outputs are ``v @ T`` (linear
        cells with virtual-ground sensing only)."""

    def read(
        self,
        i: int,
        j: int,
        *,
        scheme: Literal["floating", "grounded", "v/2", "v/3"] = "grounded",
        v: float = 0.2,
    ) -> dict[str, Any]:
        """Read cell (i, j) at ``v`` volts, unselected lines per ``scheme``; returns ``netc xbar
        --op read --json``'s "result": ``measured_a``, ``cell_a``, ``sneak_a``,
        ``sneak_fraction``, ``ideal_a``, ``g_read_siemens``, ``g_true_siemens``, ..."""

    def set_conductances(self, g: F64Array) -> None:
        """A new conductance state (rows, cols) of the same array (factors and ``T`` redone)."""

#!/usr/bin/env python3
"""Solve a passive crossbar with badcrossbar (the peer netc is checked against).

usage: badcrossbar_solve.py G_FILE V_FILE ROWS COLS K R_WORD R_BIT OUT_FILE

G_FILE: ROWS*COLS conductances (S), row-major, float64 little-endian.
V_FILE: ROWS*K applied voltages (V), row-major (row i, example t), float64 little-endian.
OUT_FILE: K*COLS output currents (A), row-major (example t, column j), float64 little-endian.
Word-line segments R_WORD, bit-line segments R_BIT (ohm); badcrossbar's conventions are netc's.
"""
import logging
import sys

import numpy as np


def main() -> int:
    if len(sys.argv) != 9:
        print(__doc__, file=sys.stderr)
        return 2
    g_file, v_file, rows, cols, k, r_word, r_bit, out_file = sys.argv[1:]
    rows, cols, k = int(rows), int(cols), int(k)
    import badcrossbar

    logging.disable(logging.CRITICAL)
    g = np.fromfile(g_file, dtype="<f8").reshape(rows, cols)
    v = np.fromfile(v_file, dtype="<f8").reshape(rows, k)
    with np.errstate(divide="ignore"):
        resistances = 1.0 / g
    sol = badcrossbar.compute(
        v,
        resistances,
        r_i_word_line=float(r_word),
        r_i_bit_line=float(r_bit),
        node_voltages=False,
        all_currents=False,
    )
    out = np.asarray(sol.currents.output, dtype="<f8").reshape(k, cols)
    out.tofile(out_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())

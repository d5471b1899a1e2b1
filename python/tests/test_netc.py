"""The Python package against the CLI's own output for the same input (the built `netc` binary),
the crossbar against badcrossbar in the same process, errors as exceptions, and array checks."""

import json
import threading

import numpy as np
import pytest

import netc

# ------------------------------------------------------------------------------------------------
# solve


@pytest.mark.parametrize(
    "name", ["ladder.cir", "sources_efgh.cir", "subckt_params.cir", "cmos_inverter_dc.cir", "crossbar16.cir"]
)
def test_solve_file_is_the_cli_json(repo, cli_json, name):
    path = repo / "netlists" / "verify" / name
    want = cli_json("solve", path, "--json")
    assert netc.solve(path) == want
    assert netc.solve(str(path)) == want
    # the same netlist given as text
    assert netc.solve(path.read_text()) == want


def test_solve_error_is_the_cli_message(tmp_path, cli):
    bad = "bad divider\nV1 in 0 1\nR1 in out xyz\nR2 out 0 1k\n.op\n.end\n"
    f = tmp_path / "bad.cir"
    f.write_text(bad)
    p = cli("solve", f, "--json", ok=False)
    assert p.returncode != 0
    with pytest.raises(netc.NetcError) as e:
        netc.solve(f)
    assert p.stderr.strip() == "error: " + str(e.value)
    assert f"{f}:3:" in str(e.value) and "^" in str(e.value)
    with pytest.raises(netc.NetcError, match=r"<string>:3:"):
        netc.solve(bad)


def test_solve_missing_file_raises(tmp_path):
    with pytest.raises(netc.NetcError):
        netc.solve(tmp_path / "nope.cir")


def test_solve_warning_is_a_python_warning(tmp_path, cli_json):
    text = "w\nV1 a 0 2\nR1 a 0 1k\n.control\nrun\n.endc\n.op\n.end\n"
    f = tmp_path / "w.cir"
    f.write_text(text)
    with pytest.warns(UserWarning):
        got = netc.solve(f)
    assert got == cli_json("solve", f, "--json")
    assert got["analyses"][0]["values"]["i(v1)"] == pytest.approx(-2e-3, rel=1e-12)


# ------------------------------------------------------------------------------------------------
# Crossbar


def _g(rows, cols, seed=3, lo=1e-6, hi=1e-4):
    return np.random.default_rng(seed).uniform(lo, hi, (rows, cols))


def _v(n, rows, seed=4):
    return np.random.default_rng(seed).uniform(0.0, 0.5, (n, rows))


def _write_matrix(path, m):
    # repr of a float round-trips exactly
    path.write_text("\n".join(",".join(repr(float(x)) for x in row) for row in np.atleast_2d(m)) + "\n")


def _badcrossbar_outputs(bc, g, v, r_word, r_bit):
    import logging

    logging.disable(logging.CRITICAL)
    sol = bc.compute(
        np.ascontiguousarray(v.T),
        1.0 / g,
        r_i_word_line=r_word,
        r_i_bit_line=r_bit,
        node_voltages=False,
        all_currents=False,
    )
    return np.asarray(sol.currents.output).reshape(v.shape[0], g.shape[1])


@pytest.mark.parametrize("r_word,r_bit", [(2.5, 2.5), (1.0, 4.0)])
def test_infer_agrees_with_badcrossbar(badcrossbar, r_word, r_bit):
    g, v = _g(12, 9), _v(20, 12)
    xb = netc.Crossbar(g, r_word=r_word, r_bit=r_bit)
    got = xb.infer(v)
    want = _badcrossbar_outputs(badcrossbar, g, v, r_word, r_bit)
    assert got.shape == (20, 9)
    rel = np.max(np.abs(got - want)) / np.max(np.abs(want))
    assert rel < 1e-9, rel
    # and the wires matter here (the comparison is not against the ideal product)
    ideal = v @ g
    assert np.max(np.abs(got - ideal)) / np.max(np.abs(ideal)) > 1e-4
    # outputs through the effective weights are the same circuit
    assert np.allclose(v @ xb.effective_weights(), want, rtol=1e-9, atol=0)


def test_ir_drop_against_badcrossbar_one_vector(badcrossbar):
    g, v = _g(16, 16, seed=9), _v(1, 16, seed=10)
    xb = netc.Crossbar(g, r_wire=5.0)
    one = xb.infer(v[0])
    assert one.shape == (16,)
    want = _badcrossbar_outputs(badcrossbar, g, v, 5.0, 5.0)[0]
    assert np.max(np.abs(one - want)) / np.max(np.abs(want)) < 1e-9


@pytest.mark.parametrize(
    "kwargs,flags",
    [
        ({"r_wire": 2.5}, ["--rw", "2.5"]),
        ({"r_wire": 2.0, "cell": "sinh", "k": 3.0}, ["--rw", "2", "--cell", "sinh", "--k", "3"]),
        ({"r_wire": 1.5, "cell": "1t1r", "v_gate": 2.5}, ["--rw", "1.5", "--cell", "1t1r", "--v-gate", "2.5"]),
        (
            {"r_wire": 1.0, "r_driver": 10.0, "r_sense": 20.0, "tia": (1e5, 1e4, 10.0)},
            ["--rw", "1", "--r-driver", "10", "--r-sense", "20", "--tia", "1e5,1e4,10"],
        ),
    ],
)
def test_infer_is_the_cli_output(tmp_path, cli_json, kwargs, flags):
    g, v = _g(6, 5), _v(4, 6)
    gf, vf = tmp_path / "g.txt", tmp_path / "v.txt"
    _write_matrix(gf, g)
    _write_matrix(vf, v)
    want = np.array(cli_json("xbar", "--g", gf, "--inputs", vf, "--json", *flags)["outputs"])
    got = netc.Crossbar(g, **kwargs).infer(v)
    assert np.allclose(got, want, rtol=1e-12, atol=0), np.max(np.abs(got - want))


def test_effective_weights_with_ideal_wires_is_g():
    g = _g(7, 4)
    t = netc.Crossbar(g).effective_weights()
    assert t.shape == g.shape and np.allclose(t, g, rtol=1e-12, atol=0)


def test_effective_weights_need_a_linear_array():
    with pytest.raises(netc.NetcError, match="linear"):
        netc.Crossbar(_g(4, 4), r_wire=1.0, cell="sinh").effective_weights()


@pytest.mark.parametrize("scheme", ["grounded", "floating", "v/2", "v/3"])
def test_read_is_the_cli_result(tmp_path, cli_json, scheme):
    g = _g(5, 6, seed=11)
    gf = tmp_path / "g.txt"
    _write_matrix(gf, g)
    cli_res = cli_json("xbar", "--g", gf, "--rw", "3", "--op", "read", "--at", "2,4", "--scheme", scheme,
                       "--v", "0.3", "--json")["result"]
    got = netc.Crossbar(g, r_wire=3.0).read(2, 4, scheme=scheme, v=0.3)
    assert got == cli_res


def test_read_outside_the_array_raises():
    with pytest.raises(netc.NetcError, match="outside"):
        netc.Crossbar(_g(3, 3)).read(3, 0)


def test_layouts_read_the_same():
    g, v = _g(10, 8), _v(30, 20)
    xb = netc.Crossbar(g, r_wire=2.0)
    base = xb.infer(np.ascontiguousarray(v[:, ::2]))
    assert np.array_equal(xb.infer(v[:, ::2]), base)  # strided view
    assert np.array_equal(xb.infer(np.asfortranarray(v[:, ::2])), base)  # column-major
    out = np.empty((30, 8))
    assert xb.infer(v[:, ::2], out=out) is out and np.array_equal(out, base)


def test_set_conductances_is_a_new_array():
    g1, g2, v = _g(8, 8, seed=1), _g(8, 8, seed=2), _v(10, 8)
    xb = netc.Crossbar(g1, r_wire=2.5)
    xb.infer(v)
    xb.set_conductances(g2)
    assert np.allclose(xb.infer(v), netc.Crossbar(g2, r_wire=2.5).infer(v), rtol=1e-12, atol=0)
    assert np.array_equal(xb.g, g2)


def test_infer_releases_the_interpreter():
    # A nonlinear array (Newton per vector) keeps infer busy for a while. Holding the interpreter
    # lock, it would let no other Python thread run during the call; released, a counting thread
    # keeps recording times in the middle half of the call.
    import time

    xb = netc.Crossbar(_g(24, 24), r_wire=2.0, cell="sinh", k=4.0)
    v = _v(400, 24)
    stamps = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            stamps.append(time.perf_counter())

    th = threading.Thread(target=count)
    th.start()
    try:
        t0 = time.perf_counter()
        xb.infer(v)
        t1 = time.perf_counter()
    finally:
        stop.set()
        th.join()
    assert t1 - t0 > 0.02, "the call is too short to tell"
    lo, hi = t0 + 0.25 * (t1 - t0), t1 - 0.25 * (t1 - t0)
    assert any(lo < t < hi for t in stamps)


# array checks


def test_wrong_dtype_is_rejected():
    with pytest.raises(TypeError, match="dtype float64, got <i8|dtype float64"):
        netc.Crossbar(np.ones((3, 3), dtype=np.int64))
    xb = netc.Crossbar(_g(3, 3))
    with pytest.raises(TypeError, match="float64"):
        xb.infer(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="numpy array"):
        xb.infer([[0.1, 0.2, 0.3]])


def test_wrong_shape_is_rejected():
    xb = netc.Crossbar(_g(3, 4))
    with pytest.raises(ValueError, match=r"3 values per vector"):
        xb.infer(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"\(n, rows\)"):
        xb.infer(np.ones((2, 3, 1)))
    with pytest.raises(ValueError, match=r"2-D"):
        netc.Crossbar(np.ones(5))
    with pytest.raises(ValueError, match=r"shape \(2, 4\)"):
        xb.infer(np.ones((2, 3)), out=np.empty((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(3, 4\)"):
        xb.set_conductances(np.ones((4, 3)))


def test_bad_arrays_are_netc_errors():
    with pytest.raises(netc.NetcError, match=r"cell \(0, 1\).*finite and ≥ 0"):
        netc.Crossbar(np.array([[1e-5, -1e-5]]))
    with pytest.raises(netc.NetcError, match="unknown cell kind"):
        netc.Crossbar(_g(2, 2), cell="2t2r")
    with pytest.raises(netc.NetcError, match="at least 1×1"):
        netc.Crossbar(np.zeros((0, 3)))


# ------------------------------------------------------------------------------------------------
# compile, train, evaluate


def test_compile_is_the_cli_mapping(tmp_path, repo, cli):
    net = repo / "netlists" / "mlp_passive.net"
    cli("compile", net, "-o", tmp_path / "cli", "--quiet")
    want = json.loads((tmp_path / "cli" / "mapping.json").read_text())
    got = netc.compile(net, out=tmp_path / "py")
    assert got == want
    assert json.loads((tmp_path / "py" / "mapping.json").read_text()) == want
    mem = netc.compile(net)
    assert mem["netlists"] == [] and {k: v for k, v in mem.items() if k != "netlists"} == {
        k: v for k, v in want.items() if k != "netlists"
    }
    assert "report" in got


def test_compile_error_is_located(tmp_path, cli):
    bad = tmp_path / "bad.net"
    bad.write_text("network n {\n  input 4x4x1;\n  dense h { units ten; }\n}\n")
    p = cli("compile", bad, "-o", tmp_path / "o", ok=False)
    with pytest.raises(netc.NetcError) as e:
        netc.compile(bad)
    assert p.stderr.strip() == "error: " + str(e.value)
    assert f"{bad}:3:" in str(e.value)


def _no_seconds(metrics):
    return [{k: v for k, v in m.items() if k != "seconds"} for m in metrics]


def test_train_and_evaluate_are_the_cli(tmp_path, repo, cli):
    net = repo / "netlists" / "mlp_passive.net"
    # `netc.train` is software training (ideal backend by default); the CLI runs a `.net` file on
    # the chip in its declared mode unless a backend is named, so name the same one
    cli("train", net, "--backend", "ideal", "--epochs", "3", "--seed", "5", "--out", tmp_path / "cli", "-q")
    got = netc.train(net, epochs=3, seed=5, out=tmp_path / "py")
    want_metrics = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert _no_seconds(got["metrics"]) == _no_seconds(want_metrics)
    assert got["finished"] and got["network"]
    assert json.loads((tmp_path / "py" / "model.json").read_text()) == json.loads(
        (tmp_path / "cli" / "model.json").read_text()
    )
    assert got["compiler_weights"] == str(tmp_path / "py" / "weights.json")

    model = tmp_path / "cli" / "model.json"
    for backend in ["ideal", "circuit"]:
        out = tmp_path / f"eval_{backend}"
        cli("eval", net, "--weights", model, "--backend", backend, "--out", out)
        want = json.loads((out / "eval.json").read_text())[0]
        assert netc.evaluate(net, weights=model, backend=backend) == want


def test_train_bad_option_is_a_value_error(repo):
    with pytest.raises(ValueError, match="epochs"):
        netc.train(repo / "netlists" / "mlp_passive.net", epochs="many")
    with pytest.raises(ValueError, match="unexpected argument"):
        netc.train(repo / "netlists" / "mlp_passive.net", no_such_option=3)
    with pytest.raises(ValueError, match="one backend"):
        netc.evaluate(repo / "netlists" / "mlp_passive.net", weights="w.json", compare=["ideal", "circuit"])


def test_evaluate_wrong_network_raises(tmp_path, repo):
    got = netc.train(preset="s4", epochs=1, out=tmp_path)
    with pytest.raises(netc.NetcError, match="different network"):
        netc.evaluate(repo / "netlists" / "mlp_passive.net", weights=got["model"])

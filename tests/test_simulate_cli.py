"""``lifnet simulate``: one neuron from the command line, against the library and closed form."""

import json
import subprocess
import sys

import pytest
import torch

from lifnet import LIFParameters, firing_rate, lif_simulate, stepped_rate
from lifnet.cli import main


def _run(capsys, *argv):
    code = main(["simulate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys, *argv):
    code, out, err = _run(capsys, *argv, "--json")
    assert code == 0 and err == ""
    return json.loads(out)


def _library_steps(p, current):
    spikes, _, _ = lif_simulate(torch.tensor(current, dtype=torch.float64)[:, None], p)
    return torch.nonzero(spikes[:, 0]).flatten().tolist()


def test_acceptance_notebook_neuron_matches_closed_form():
    # as a user runs it: the installed entry point, in a fresh process
    proc = subprocess.run([sys.executable, "-m", "lifnet", "simulate", "--current", "20",
                           "--steps", "100", "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    p = LIFParameters()            # R 1 MOhm, tau 10 ms, rest = reset -65, th -50, dt 1
    assert result["spike_steps"] == result["closed_form_spike_steps"] == list(range(13, 100, 14))
    assert result["spike_times_ms"] == [13.0, 27.0, 41.0, 55.0, 69.0, 83.0, 97.0]
    assert result["spike_count"] == 7 and result["rate_hz"] == pytest.approx(70.0)
    assert result["closed_form_rate_hz"] == pytest.approx(firing_rate(20.0, p))
    assert result["closed_form_stepped_rate_hz"] == pytest.approx(1000.0 / 14)
    assert result["closed_form_agrees"] is True


@pytest.mark.parametrize("flags", [
    ["--current", "37.5", "--dt", "0.1", "--duration", "50", "--t-ref", "2.35"],
    ["--current", "18", "--tau-m", "4", "--v-init", "-55", "--v-reset", "-70", "--steps", "300"],
    ["--current", "3", "--resistance", "7", "--capacitance", "2", "--steps", "200"],
    ["--current", "14.9", "--steps", "500"],
])
def test_constant_current_equals_library_and_closed_form(capsys, flags):
    result = _json(capsys, *flags)
    n = result["neuron"]
    p = LIFParameters(**{k: n[k] for k in ("resistance", "tau_m", "v_rest", "v_reset", "v_th",
                                          "v_init", "t_ref", "dt", "reset")})
    current = float(flags[1])
    assert result["spike_steps"] == _library_steps(p, [current] * result["steps"])
    assert result["spike_steps"] == result["closed_form_spike_steps"]
    assert result["spike_times_ms"] == pytest.approx([s * p.dt for s in result["spike_steps"]])
    assert result["rate_hz"] == pytest.approx(
        1000 * result["spike_count"] / (result["steps"] * p.dt))
    assert result["closed_form_rate_hz"] == pytest.approx(firing_rate(current, p))


def test_duration_is_a_number_of_steps(capsys):
    by_steps = _json(capsys, "--current", "25", "--dt", "0.5", "--steps", "240")
    by_ms = _json(capsys, "--current", "25", "--dt", "0.5", "--duration", "120")
    assert by_steps["spike_steps"] == by_ms["spike_steps"] and by_ms["steps"] == 240


def test_step_current_switches_at_the_first_step_starting_at_or_after_the_time(capsys):
    result = _json(capsys, "--current", "0:30@40.5", "--steps", "120")
    p = LIFParameters()
    current = [0.0] * 41 + [30.0] * 79                  # step 41 starts at 41 ms >= 40.5
    assert result["spike_steps"] == _library_steps(p, current)
    assert result["spike_steps"][0] > 41
    assert result["closed_form_spike_steps"] is None and result["closed_form_agrees"] is None


def test_current_file_one_value_per_step(capsys, tmp_path):
    values = [0.0, 50.0, 50.0, -5.0, 80.0] * 20
    path = tmp_path / "current.txt"
    path.write_text("# nA per step\n" + "\n".join(map(str, values)) + "\n\n")
    result = _json(capsys, "--current", str(path))
    assert result["steps"] == 100
    assert result["spike_steps"] == _library_steps(LIFParameters(), values)
    assert result["spike_count"] > 0


def test_subtract_mode_has_no_closed_form(capsys):
    result = _json(capsys, "--current", "40", "--reset", "subtract")
    assert result["spike_count"] > 0 and result["closed_form_rate_hz"] is None


def test_text_output_names_spikes_rate_and_closed_form(capsys):
    code, out, _ = _run(capsys, "--current", "20", "--steps", "100")
    assert code == 0
    assert "spikes: 7 at steps 13, 27, 41, 55, 69, 83, 97" in out
    assert "times 13, 27, 41, 55, 69, 83, 97 ms" in out
    assert "rate: 70 Hz" in out and "equal to the simulation" in out
    assert f"{firing_rate(20.0, LIFParameters()):.4g} Hz continuous" in out


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_membrane_plot_is_written_whole(capsys, tmp_path):
    out = tmp_path / "membrane.png"
    result = _json(capsys, "--current", "0:30@40", "--steps", "120", "--t-ref", "2",
                   "--plot", str(out))
    assert result["plot"] == str(out) and _is_png(out)
    assert [f.name for f in tmp_path.iterdir()] == ["membrane.png"]


def test_fi_curve_rates_equal_the_stepped_closed_form(capsys, tmp_path):
    out = tmp_path / "fi.png"
    result = _json(capsys, "--fi", "0:60:2.5", "--t-ref", "1.5", "--plot", str(out))
    p = LIFParameters(t_ref=1.5)
    assert result["currents_na"] == pytest.approx([2.5 * k for k in range(25)])
    assert _is_png(out)
    for current, rate, count in zip(result["currents_na"], result["rate_hz"],
                                    result["spike_count"]):
        if count >= 2:
            assert rate == pytest.approx(stepped_rate(current, p))
        else:
            assert rate == 0.0 and (current <= p.rheobase or stepped_rate(current, p) < 2.0)
    assert result["closed_form_rate_hz"][-1] == pytest.approx(firing_rate(60.0, p))
    assert sum(c > 0 for c in result["spike_count"]) >= 15


def test_fi_text_table(capsys):
    code, out, _ = _run(capsys, "--fi", "14:20:2")
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [float(r[0]) for r in rows] == [14.0, 16.0, 18.0, 20.0]
    assert float(rows[-1][2]) == pytest.approx(stepped_rate(20.0, LIFParameters()), rel=1e-3)


@pytest.mark.parametrize("flags, flag", [
    (["--current", "20", "--dt", "-0.1"], "--dt"),
    (["--current", "20", "--v-th", "-70"], "--v-th"),
    (["--current", "20", "--v-th", "-60", "--v-reset", "-60"], "--v-th"),
    (["--current", "20", "--t-ref", "-1"], "--t-ref"),
    (["--current", "20", "--resistance", "0"], "--resistance"),
    (["--current", "20", "--capacitance", "-2"], "--capacitance"),
    (["--current", "20", "--tau-m", "nan"], "--tau-m"),
    (["--current", "20", "--steps", "0"], "--steps"),
    (["--current", "20", "--duration", "10.5"], "--duration"),
    (["--current", "20", "--duration", "-5"], "--duration"),
    (["--current", "0:20@"], "--current"),
    (["--current", "0:20@-3"], "--current"),
    (["--current", "a:b@c"], "--current"),
    (["--current", "no-such-file.txt"], "--current"),
    (["--current", "nan"], "--current"),
    (["--fi", "10:0:1"], "--fi"),
    (["--fi", "0:10"], "--fi"),
    (["--fi", "0:1e9:1"], "--fi"),
    (["--current", "20", "--plot", "trace.nope"], "--plot"),
    (["--current", "20", "--steps", "x"], "--steps"),
    (["--current", "20", "--reset", "zero"], "--reset"),
    (["--current", "20", "--fi", "0:1:1"], "--fi"),
])
def test_out_of_range_flags_exit_2_with_one_line_naming_the_flag(capsys, tmp_path,
                                                                monkeypatch, flags, flag):
    monkeypatch.chdir(tmp_path)
    code = _exit_code(["simulate", *flags])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lifnet: error:") and flag in lines[0]
    assert list(tmp_path.iterdir()) == []


def _exit_code(argv):
    """main's status, or argparse's own (a word for a number, an unknown choice)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("content, words", [
    ("", "is empty"),
    ("# only a comment\n\n", "is empty"),
    ("1\n2\nabc\n", "line 3"),
    ("1\ninf\n", "line 2"),
])
def test_bad_current_files_are_named(capsys, tmp_path, content, words):
    path = tmp_path / "current.txt"
    path.write_text(content)
    code, out, err = _run(capsys, "--current", str(path))
    assert code == 2 and out == "" and "--current" in err and words in err
    assert len(err.strip().splitlines()) == 1


def test_file_length_must_match_an_explicit_window(capsys, tmp_path):
    path = tmp_path / "current.txt"
    path.write_text("1\n2\n3\n")
    code, _, err = _run(capsys, "--current", str(path), "--steps", "5")
    assert code == 2 and "has 3 values" in err and "5 steps" in err


def test_duration_and_steps_are_exclusive(capsys):
    assert _exit_code(["simulate", "--current", "1", "--steps", "5", "--duration", "5"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err

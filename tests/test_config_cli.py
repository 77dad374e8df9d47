"""``lifnet config``: the full configuration as commented TOML, read back by --config."""

import re

import pytest

from lifnet.cli import main
from lifnet.config import PRESETS, SECTIONS, Config, preset_config


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_config_prints_every_key_with_a_comment_and_reads_back(tmp_path, capsys, preset):
    assert main(["config", "--preset", preset]) == 0
    text = capsys.readouterr().out
    for section, cls in SECTIONS.items():
        assert f"[{section}]" in text
        for f in cls.__dataclass_fields__.values():
            line = next(x for x in text.splitlines() if re.match(rf"#? ?{f.name} =", x))
            assert "  # " in line, line
            if f.metadata["unit"]:
                assert f"[{f.metadata['unit']}]" in line, line
    assert "v_th = -50.0  # firing threshold [mV]" in text
    assert "tau_m = 10.0  # membrane time constant" in text and "[ms]" in text
    assert "reset mode: to_reset or subtract" in text

    path = tmp_path / "c.toml"
    path.write_text(text)
    assert Config.from_toml(path) == preset_config(preset)
    assert main(["config", "--config", str(path)]) == 0
    assert capsys.readouterr().out == text          # the round trip is exact


def test_config_applies_set_and_flags(capsys):
    assert main(["config", "--set", "neuron.v_th=-52", "--epochs", "7"]) == 0
    out = capsys.readouterr().out
    assert "v_th = -52.0" in out and "max_epochs = 7" in out


@pytest.mark.parametrize("body, words", [
    ("[neuron]\ncolour = 3\n", ["unknown key 'neuron.colour'"]),
    ("[nueron]\nv_th = -50.0\n", ["unknown section or key 'nueron'"]),
    ("[network]\nsteps = \"many\"\n", ["network.steps = 'many'", "an integer"]),
    ("[network]\nsteps = 1.5\n", ["network.steps = 1.5", "int"]),
    ("[neuron]\nv_th = true\n", ["neuron.v_th = True"]),
    ("[training]\noptimizer = \"rmsprop\"\n", ["training.optimizer = 'rmsprop'", "'adam'"]),
    ("[neuron\n", ["not a valid TOML file"]),
])
def test_bad_files_are_refused_naming_the_key(tmp_path, capsys, body, words):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    assert main(["config", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == "", captured
    for word in words:
        assert word in lines[0], lines[0]

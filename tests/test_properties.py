"""Property-based tests: arbitrary bytes and strings give a valid result or a LifnetError."""

import gzip
import math
from dataclasses import fields

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lifnet import LifnetError
from lifnet.config import SECTIONS, Config, parse_set
from lifnet.data.idx import encode_idx, parse_idx, read_idx

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
KEYS = [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls)]


# -- the IDX reader ------------------------------------------------------------------------


def idx_like():
    """Bytes that often look like IDX: a plausible header, then anything."""
    header = st.tuples(st.sampled_from([0, 0, 0, 1]), st.sampled_from([0, 0, 1]),
                       st.sampled_from([8, 8, 8, 9, 0x0D]), st.integers(0, 6))
    dims = st.lists(st.integers(0, 5), min_size=0, max_size=6)
    return st.builds(lambda h, d, rest: bytes(h) + b"".join(x.to_bytes(4, "big") for x in d)
                     + rest, header, dims, st.binary(max_size=200))


@FAST
@given(st.one_of(st.binary(max_size=300), idx_like()))
def test_parse_idx_gives_an_array_or_a_data_error(raw):
    try:
        a = parse_idx(raw, "x")
    except LifnetError:
        return
    assert a.dtype == np.uint8 and 1 <= a.ndim <= 4
    assert encode_idx(a) == raw                    # what it read is exactly what was there


@FAST
@given(st.one_of(st.binary(max_size=300), idx_like()), st.booleans(), st.integers(0, 400))
def test_read_idx_on_arbitrary_files_gzipped_or_cut(tmp_path, raw, gz, cut):
    data = gzip.compress(raw) if gz else raw
    path = tmp_path / "f.gz"
    path.write_bytes(data[:cut] if cut < len(data) else data)
    try:
        a = read_idx(path)
    except LifnetError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    assert isinstance(a, np.ndarray) and a.dtype == np.uint8


@FAST
@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=4, max_side=6)))
def test_idx_roundtrip(array):
    assert np.array_equal(parse_idx(encode_idx(array)), array)


# -- the configuration parser --------------------------------------------------------------


text = st.text(max_size=40)
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers() | st.integers(-(10 ** 400), 10 ** 400),
              st.floats(allow_nan=True, allow_infinity=True), text),
    lambda inner: st.lists(inner, max_size=4), max_leaves=8)


@FAST
@given(st.sampled_from(KEYS) | text, st.one_of(text, values))
@example("neuron.v_th", 10 ** 400)          # once an OverflowError, not a ConfigError
@example("network.hidden", [1, [2]])
@example("neuron.tau_m", "1" * 400)
def test_with_updates_gives_a_config_or_a_lifnet_error(key, value):
    try:
        cfg = Config().with_updates({key: value})
        cfg.validate()
    except LifnetError as e:
        assert "\n" not in str(e)
        return
    section, _, name = key.partition(".")
    got = getattr(getattr(cfg, section), name)
    if isinstance(got, float):
        assert math.isfinite(got)


@FAST
@given(st.lists(text, max_size=5))
def test_parse_set_gives_pairs_or_a_lifnet_error(items):
    try:
        pairs = parse_set(items)
    except LifnetError:
        return
    for key, value in pairs.items():
        assert any(i.partition("=")[0].strip() == key and i.partition("=")[2] == value
                   for i in items)
    try:
        Config().with_updates(pairs).validate()
    except LifnetError:
        pass


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v if x is not None) + "]"
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else "?" for c in v) + '"'


tables = st.dictionaries(
    st.sampled_from([*SECTIONS, "preset", "other"]),
    st.dictionaries(st.sampled_from([f.name for cls in SECTIONS.values()
                                     for f in fields(cls)] + ["nope"]),
                    values.filter(lambda v: v is not None), max_size=4),
    max_size=4)


@FAST
@given(st.one_of(tables, st.text(max_size=200), st.binary(max_size=100)))
def test_from_toml_gives_a_config_or_a_lifnet_error(tmp_path, doc):
    path = tmp_path / "c.toml"
    if isinstance(doc, dict):
        lines = []
        for section, keys in doc.items():
            if section == "preset":
                lines.insert(0, f'preset = "{next(iter(keys), "default")}"')
                continue
            lines.append(f"[{section}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in keys.items()]
        path.write_text("\n".join(lines) + "\n")
    elif isinstance(doc, str):
        path.write_text(doc, encoding="utf-8", errors="replace")
    else:
        path.write_bytes(doc)
    try:
        cfg = Config.from_toml(path).validate()
    except LifnetError as e:
        assert "\n" not in str(e).strip() or "TOML" in str(e)
        return
    assert isinstance(cfg, Config)


def test_a_written_configuration_reads_back(tmp_path):
    cfg = Config().with_updates({"data.dataset": "folder:/x", "data.mirrors":
                                 "http://127.0.0.1:1/{dataset}", "data.image_size": 32})
    (tmp_path / "c.toml").write_text(cfg.to_toml())
    again = Config.from_toml(tmp_path / "c.toml")
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize("bad", ["data.image_size=3", "data.image_size=2000",
                                 "data.image_size=abc"])
def test_image_size_bounds(bad):
    with pytest.raises(LifnetError, match=r"data\.image_size"):
        Config().with_updates(parse_set([bad]))


@FAST
@given(st.text(max_size=30))
def test_dataset_names_are_refused_cleanly(name):
    from lifnet.data import load_dataset

    assume(name not in ("mnist-5k", "mnist", "fashion-mnist") and not name.startswith("folder:"))
    with pytest.raises(LifnetError):
        load_dataset(name)

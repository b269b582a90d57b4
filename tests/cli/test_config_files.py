"""``cli.config_files``: TOML files of options, read strictly by the options' own declarations."""

from __future__ import annotations

import pytest

from tlcli.cli.config_files import check_toml_type, read_options_file
from tlcli.core.errors import ConfigError


@pytest.mark.parametrize("value, kind, accepted", [
    (3, int, True), (True, int, False), (3, float, True), (0.5, float, True), (True, float, False),
    ("3", int, False), (False, bool, True), (1, bool, False), ("adam", str, True), (5, str, False),
])
def test_a_toml_value_must_be_of_its_options_type_a_bool_being_no_number(tmp_path, value, kind, accepted):
    if accepted:
        check_toml_type(tmp_path / "f.toml", "key", value, kind)
    else:
        with pytest.raises(ConfigError, match="f.toml: bad value for key: expected"):
            check_toml_type(tmp_path / "f.toml", "key", value, kind)


def test_keys_are_the_options_names_with_dashes_or_underscores_and_extra_keys_come_apart(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('arch = "mlp"\nlabel-smoothing = 0.1\nhidden = [32, 16]\nbase = "--epochs 2"\n')
    values, extras = read_options_file(path, extra=("base",))
    assert values == {"arch": "mlp", "label_smoothing": 0.1, "hidden": "32,16"}
    assert extras == {"base": "--epochs 2"}


@pytest.mark.parametrize("text, message", [
    ('optimiser = "sgd"\n', "unknown key 'optimiser' (did you mean optimizer?)"),
    ('optimizer = "lbfgs"\n', "bad value for optimizer: 'lbfgs' is not one of"),
    ("epochs = 0\n", "bad value for epochs:"),
    ('out = "runs/a"\n', "unknown key 'out'"),
])
def test_a_bad_key_or_value_is_one_config_error_naming_it(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"bad\.toml: ") as refused:
        read_options_file(path, leave_out=("out", "overwrite"))
    assert message in str(refused.value)

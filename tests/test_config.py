"""Tests for expmate.config: precedence, overrides, typing, env interpolation, run_id, errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from expmate.config import Config, ConfigError, active_config, parse_config

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_ID = re.compile(r"^\d{8}_\d{6}_[0-9a-f]{6}$")


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def parse(argv: list[str], defaults: object = None) -> Config:
    return parse_config(argv, defaults=defaults, exit_on_error=False)


def error_of(argv: list[str], defaults: object = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse(argv, defaults)
    return str(info.value)


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Train:
    name: str
    epochs: int = 10
    amp: bool = False
    data_dir: Path = Path("data")
    layers: list[int] = field(default_factory=lambda: [64, 64])
    scheduler: str | None = None
    optim: Optim = field(default_factory=Optim)


# --- precedence and files ---------------------------------------------------------------------


def test_precedence_defaults_then_files_then_overrides(tmp_path: Path) -> None:
    """A file overrides the defaults; a command-line override beats both."""
    base = write(tmp_path / "a.yaml", "training:\n  epochs: 5\n  batch: 32\n")
    config = parse(
        ["--config", base, "training.batch=64"],
        defaults={"training": {"epochs": 1, "batch": 8, "workers": 2}},
    )
    assert config.to_dict()["training"] == {"epochs": 5, "batch": 64, "workers": 2}


def test_files_deep_merge_in_order(tmp_path: Path) -> None:
    """Later files win key by key; mappings merge rather than replace."""
    a = write(tmp_path / "a.yaml", "model: {depth: 2, width: 8}\nseed: 1\n")
    b = write(tmp_path / "b.yaml", "model: {width: 16}\n")
    config = parse(["--config", a, f"--config={b}"])
    assert config.model.to_dict() == {"depth": 2, "width": 16}
    assert config.seed == 1


def test_short_config_flag_and_empty_file(tmp_path: Path) -> None:
    """-c is --config; an empty file adds nothing."""
    empty = write(tmp_path / "empty.yaml", "")
    assert parse(["-c", empty], defaults={"x": 1}).x == 1


def test_yaml_exponent_is_float(tmp_path: Path) -> None:
    """lr: 1e-3 in a file is a float (plain PyYAML would read a string)."""
    path = write(tmp_path / "a.yaml", "lr: 1e-3\nneg: -2e-4\nbig: 1E5\nint: 7\nword: e5\n")
    config = parse(["--config", path])
    assert (config.lr, config.neg, config.big, config.int, config.word) == (
        0.001,
        -0.0002,
        100000.0,
        7,
        "e5",
    )


def test_file_int_for_float_default_stays_float(tmp_path: Path) -> None:
    """lr: 1 in a file over a float default is 1.0."""
    path = write(tmp_path / "a.yaml", "lr: 1\n")
    value = parse(["--config", path], defaults={"lr": 0.1}).lr
    assert (value, type(value)) == (1.0, float)


# --- overrides keep their type ----------------------------------------------------------------


def test_override_int_stays_int() -> None:
    """An int key overridden with digits is an int."""
    value = parse(["epochs=20"], defaults={"epochs": 10}).epochs
    assert (value, type(value)) == (20, int)


def test_override_float_from_exponent_and_negative() -> None:
    """1e-3 and -1 are floats for a float key."""
    config = parse(["lr=1e-3", "wd=-1"], defaults={"lr": 0.1, "wd": 0.0})
    assert (config.lr, config.wd) == (0.001, -1.0)
    assert type(config.wd) is float


def test_override_negative_int() -> None:
    """A negative number is a value, not an option."""
    assert parse(["seed=-1"], defaults={"seed": 0}).seed == -1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("False", False),
        ("1", True),
        ("0", False),
        ("yes", True),
        ("no", False),
    ],
)
def test_override_bool_words(text: str, expected: bool) -> None:
    """A bool key accepts true/false, 1/0, yes/no."""
    assert parse([f"amp={text}"], defaults={"amp": False}).amp is expected


def test_override_list_keeps_item_type() -> None:
    """[1,2] is a list; items of a float list become floats."""
    config = parse(["sizes=[1,2]", "ratios=[1, 2]"], defaults={"sizes": [8], "ratios": [0.5]})
    assert (config.sizes, config.ratios) == ([1, 2], [1.0, 2.0])
    assert type(config.ratios[0]) is float


def test_override_null() -> None:
    """null clears a value."""
    assert parse(["scheduler=null"], defaults={"scheduler": "cosine"}).scheduler is None


def test_override_string_keeps_text() -> None:
    """A string key keeps the text as written, even when it looks like a number."""
    config = parse(["name=007", "tag='1e-3'"], defaults={"name": "a", "tag": "b"})
    assert (config.name, config.tag) == ("007", "1e-3")


def test_override_value_containing_equals() -> None:
    """Only the first '=' separates key and value."""
    assert parse(["expr=a=b"], defaults={"expr": ""}).expr == "a=b"


def test_override_mapping_merges() -> None:
    """key={...} merges into the mapping at key."""
    config = parse(["optim={lr: 0.5}"], defaults={"optim": {"lr": 0.1, "name": "sgd"}})
    assert config.optim.to_dict() == {"lr": 0.5, "name": "sgd"}


def test_add_new_key_with_plus() -> None:
    """+key=value adds keys, inferring the type; nested parents are created."""
    config = parse(["+extra.depth=3", "+extra.lr=1e-4", "+extra.tag=no"])
    assert config.extra.to_dict() == {"depth": 3, "lr": 0.0001, "tag": "no"}


def test_override_of_none_key_infers_type() -> None:
    """A key whose value is None takes the type its text reads as."""
    assert parse(["ckpt=12"], defaults={"ckpt": None}).ckpt == 12


# --- bad input --------------------------------------------------------------------------------


def test_type_mismatch_names_key_value_type() -> None:
    """An int key given 'ten' is an error naming all three."""
    assert error_of(["training.epochs=ten"], {"training": {"epochs": 1}}) == (
        "training.epochs: expected int, got 'ten'"
    )


def test_int_key_refuses_fraction() -> None:
    """2.5 is not an int."""
    assert error_of(["epochs=2.5"], {"epochs": 1}) == "epochs: expected int, got '2.5'"


def test_bad_bool_word() -> None:
    """maybe is not a bool."""
    assert error_of(["amp=maybe"], {"amp": True}) == "amp: expected bool, got 'maybe'"


def test_unknown_key_suggests_close_match() -> None:
    """A typo is an error with the closest key."""
    assert error_of(["training.epoch=3"], {"training": {"epochs": 1}}) == (
        "unknown key 'training.epoch' (did you mean 'training.epochs'?); "
        "write +training.epoch=VALUE to add a new key"
    )


def test_unknown_key_suggests_same_leaf() -> None:
    """A key given without its section points at the full key."""
    assert "did you mean 'training.epochs'?" in error_of(["epochs=3"], {"training": {"epochs": 1}})


def test_override_without_equals() -> None:
    """An override must have '='."""
    assert (
        error_of(["epochs"], {"epochs": 1}) == "override 'epochs' has no '=' (write epochs=VALUE)"
    )


def test_dashed_option_is_rejected() -> None:
    """--lr=1 is not an override."""
    assert error_of(["--lr=1"], {"lr": 0.1}).startswith("unrecognized argument '--lr=1'")


def test_missing_file(tmp_path: Path) -> None:
    """A missing file is named."""
    path = tmp_path / "nope.yaml"
    assert error_of(["--config", str(path)]) == f"config file not found: {path}"


def test_invalid_yaml_has_line_and_column(tmp_path: Path) -> None:
    """Invalid YAML reports file, line and column."""
    path = write(tmp_path / "bad.yaml", "a: 1\nb: [1, 2\nc: 3\n")
    assert re.fullmatch(rf"{re.escape(path)}:\d+:\d+: invalid YAML: .+", error_of(["-c", path]))
    assert error_of(["-c", write(tmp_path / "bad2.yaml", "a: 1\n b: 2\n")]).startswith(
        f"{tmp_path / 'bad2.yaml'}:2:3: invalid YAML: "
    )


def test_yaml_must_be_a_mapping(tmp_path: Path) -> None:
    """A list at the top of a file is refused."""
    path = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    assert (
        error_of(["-c", path]) == f"{path}: expected a mapping of keys at the top level, got list"
    )


def test_error_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """By default a mistake prints one line to stderr and exits with status 2."""
    with pytest.raises(SystemExit) as info:
        parse_config(["epochs=ten"], defaults={"epochs": 1})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith(": error: epochs: expected int, got 'ten'\n")
    assert err.count("\n") == 1


def test_config_error_is_value_error() -> None:
    """ConfigError is a ValueError."""
    assert issubclass(ConfigError, ValueError)


# --- environment interpolation ----------------------------------------------------------------


def test_env_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """${env:VAR} and ${env:VAR,default}; a whole reference is typed, an embedded one is text."""
    monkeypatch.setenv("EXPMATE_TEST_DATA", "/data")
    monkeypatch.setenv("EXPMATE_TEST_EPOCHS", "12")
    monkeypatch.delenv("EXPMATE_TEST_UNSET", raising=False)
    path = write(
        tmp_path / "a.yaml",
        """\
        data: ${env:EXPMATE_TEST_DATA}/train
        epochs: ${env:EXPMATE_TEST_EPOCHS}
        lr: ${env:EXPMATE_TEST_UNSET,1e-3}
        name: ${env:EXPMATE_TEST_UNSET, run}
        """,
    )
    config = parse(["-c", path])
    assert (config.data, config.epochs, config.lr, config.name) == ("/data/train", 12, 0.001, "run")


def test_env_unset_without_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset variable without a default names file, key and variable."""
    monkeypatch.delenv("EXPMATE_TEST_UNSET", raising=False)
    path = write(tmp_path / "a.yaml", "paths:\n  data: ${env:EXPMATE_TEST_UNSET}\n")
    assert error_of(["-c", path]) == (
        f"{path}: paths.data: environment variable EXPMATE_TEST_UNSET is not set "
        "(write ${env:EXPMATE_TEST_UNSET,default} to give a default)"
    )


# --- dataclass defaults -----------------------------------------------------------------------


def test_dataclass_converts_and_validates(tmp_path: Path) -> None:
    """File strings for typed fields are converted: '42' -> 42, 'yes' -> True, str -> Path."""
    path = write(tmp_path / "a.yaml", "name: r\nepochs: '42'\namp: 'yes'\ndata_dir: /d\n")
    config = parse(["-c", path, "optim.lr=1", "layers=[1,2]"], defaults=Train)
    assert (config.epochs, config.amp, config.data_dir) == (42, True, Path("/d"))
    assert (config.optim.lr, config.optim.betas, config.layers) == (1.0, (0.9, 0.999), [1, 2])


def test_dataclass_string_for_int_is_error(tmp_path: Path) -> None:
    """A non-numeric string for an int field is an error, never a silent str."""
    path = write(tmp_path / "a.yaml", "name: r\nepochs: ten\n")
    assert error_of(["-c", path], Train) == "epochs: expected int, got 'ten'"


def test_dataclass_nested_type_error() -> None:
    """Nested fields are checked too."""
    assert error_of(["name=r", "optim.betas=[1, 2, 3]"], Train) == (
        "optim.betas: expected tuple[float, float], got [1, 2, 3]"
    )


def test_dataclass_required_field() -> None:
    """A field without a default must be given."""
    assert error_of([], Train) == (
        "missing required key 'name' (set it in a config file or with name=VALUE)"
    )


def test_dataclass_unknown_key_in_file(tmp_path: Path) -> None:
    """A file may not add keys the dataclass does not have."""
    path = write(tmp_path / "a.yaml", "name: r\noptim:\n  lrr: 0.1\n")
    assert error_of(["-c", path], Train) == (
        f"unknown key 'optim.lrr' in {path} (did you mean 'optim.lr'?); "
        "write +optim.lrr=VALUE to add a new key"
    )


def test_dataclass_instance_as_defaults() -> None:
    """An instance's values are the defaults."""
    config = parse([], defaults=Train(name="x", epochs=3))
    assert (config.name, config.epochs, config.scheduler) == ("x", 3, None)


# --- Config object ----------------------------------------------------------------------------


def test_config_access() -> None:
    """Attribute, dotted item, in, get, iteration, len."""
    config = Config({"run_id": "r", "training": {"epochs": 10, "opt": {"lr": 0.1}}})
    assert config.training.opt.lr == 0.1
    assert config["training.opt.lr"] == 0.1
    assert "training.epochs" in config
    assert "training.nope" not in config
    assert config.get("training.nope", 5) == 5
    assert list(config) == ["run_id", "training"]
    assert len(config) == 2


def test_config_missing_attribute_suggests() -> None:
    """A missing attribute is an AttributeError with a suggestion."""
    with pytest.raises(AttributeError, match=r"did you mean 'epochs'\?"):
        _ = Config({"epochs": 1}).epoch


def test_config_assignment_through_views() -> None:
    """Assigning through a nested view changes the config."""
    config = Config({"training": {"epochs": 10}})
    config.training.epochs = 3
    config["training.batch"] = 8
    assert config.to_dict() == {"training": {"epochs": 3, "batch": 8}}


def test_to_dict_is_a_copy() -> None:
    """Changing to_dict()'s result leaves the config alone."""
    config = Config({"a": {"b": [1]}})
    config.to_dict()["a"]["b"].append(2)
    assert config.a.b == [1]


def test_repr() -> None:
    """repr shows the data."""
    assert repr(Config({"a": 1, "b": {"c": "x"}})) == "Config({'a': 1, 'b': {'c': 'x'}})"


def test_equality_with_dict() -> None:
    """A config equals the dict it holds."""
    assert Config({"a": 1}) == {"a": 1}


# --- run_id, saving, help ---------------------------------------------------------------------


def test_run_id_generated_and_first() -> None:
    """Every config has a run_id, generated when not given, listed first."""
    config = parse([], defaults={"x": 1})
    assert RUN_ID.match(config.run_id)
    assert list(config) == ["run_id", "x"]


def test_run_id_from_command_line() -> None:
    """run_id=abc sets it without +."""
    assert parse(["run_id=abc"]).run_id == "abc"


def test_run_id_typed_config() -> None:
    """A dataclass config gets a run_id too."""
    assert parse(["name=x", "run_id=r1"], defaults=Train).run_id == "r1"


def test_active_config_is_last_parsed() -> None:
    """active_config() is the config parse_config returned last."""
    config = parse(["run_id=last"])
    assert active_config() is config


def test_save_round_trips_as_plain_yaml(tmp_path: Path) -> None:
    """config.yaml is plain YAML that safe_load reads back; no temp file is left."""
    config = parse(["name=x", "run_id=r1"], defaults=Train)
    target = tmp_path / "run" / "config.yaml"
    assert config.save(target) == target
    assert yaml.safe_load(target.read_text()) == {
        "run_id": "r1",
        "name": "x",
        "epochs": 10,
        "amp": False,
        "data_dir": "data",
        "layers": [64, 64],
        "scheduler": None,
        "optim": {"lr": 0.001, "betas": [0.9, 0.999]},
    }
    assert os.listdir(target.parent) == ["config.yaml"]


def test_help_lists_keys_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """--help prints every key with its value and type, then exits 0."""
    with pytest.raises(SystemExit) as info:
        parse_config(["--help", "epochs=3"], defaults={"epochs": 1, "opt": {"lr": 0.1}})
    assert info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:] == [
        "keys (current value, type):",
        "  run_id  <generated>  str",
        "  epochs  3            int",
        "  opt.lr  0.1          float",
    ]


def test_import_is_light() -> None:
    """Importing expmate.config imports neither yaml nor torch."""
    code = "import sys, expmate.config; print('yaml' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True
    ).stdout
    assert out == "False False\n"


# --- the guide's complete example -------------------------------------------------------------

_GUIDE_EXAMPLE = textwrap.dedent(
    """
    import random
    from expmate import ExperimentLogger, parse_config

    def train_epoch(model, loader):
        return random.random(), random.random()

    def validate(model, loader):
        return random.random(), random.random()

    model = train_loader = val_loader = None

    # Parse config
    config = parse_config()

    # Create logger
    logger = ExperimentLogger(run_dir=f"runs/{config.run_id}")
    logger.info(f"Starting experiment: {config.run_id}")

    for epoch in range(config.training.epochs):
        with logger.stage('epoch', epoch=epoch):
            with logger.stage('train'):
                with logger.timer('train_epoch'):
                    train_loss, train_acc = train_epoch(model, train_loader)
            logger.log_metric(step=epoch, split='train', name='loss', value=train_loss)
            logger.log_metric(step=epoch, split='train', name='accuracy', value=train_acc)
            with logger.stage('validation'):
                with logger.timer('val_epoch'):
                    val_loss, val_acc = validate(model, val_loader)
            logger.log_metric(step=epoch, split='val', name='loss', value=val_loss)
            logger.log_metric(step=epoch, split='val', name='accuracy', value=val_acc)
            with logger.log_every(every=1):
                logger.info(
                    f"Epoch {epoch}/{config.training.epochs}: "
                    f"train_loss={train_loss:.4f}, val_loss={val_loss:.4f}, "
                    f"val_acc={val_acc:.4f}"
                )

    best_loss = logger.get_best_metric('loss', split='val')
    best_acc = logger.get_best_metric('accuracy', split='val')
    logger.info(f"Best validation loss: {best_loss['value']:.4f} at epoch {best_loss['step']}")
    logger.info(f"Best validation accuracy: {best_acc['value']:.4f} at epoch {best_acc['step']}")
    logger.info(f"Logs saved to: {logger.run_dir}")
    """
)


def test_guide_complete_example_end_to_end(tmp_path: Path) -> None:
    """The guide's example runs with a YAML file and overrides and saves the resolved config."""
    (tmp_path / "train.py").write_text(_GUIDE_EXAMPLE)
    write(tmp_path / "exp.yaml", "training:\n  epochs: 5\n  lr: 1e-3\n")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), NO_COLOR="1")
    argv = [
        sys.executable,
        "train.py",
        "--config",
        "exp.yaml",
        "training.epochs=3",
        "run_id=sweep_a",
    ]
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "runs" / "sweep_a"
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == {
        "run_id": "sweep_a",
        "training": {"epochs": 3, "lr": 0.001},
    }
    log = (run_dir / "exp.log").read_text()
    assert "Starting experiment: sweep_a" in log
    assert "Epoch 2/3: train_loss=" in log


def test_guide_example_bad_override_exits_2(tmp_path: Path) -> None:
    """A typo on the command line of a script ends with one line and status 2, no traceback."""
    (tmp_path / "train.py").write_text("from expmate import parse_config\nparse_config()\n")
    write(tmp_path / "exp.yaml", "training:\n  epochs: 5\n")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    argv = [sys.executable, "train.py", "-c", "exp.yaml", "training.epohcs=3"]
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == (
        "train.py: error: unknown key 'training.epohcs' (did you mean 'training.epochs'?); "
        "write +training.epohcs=VALUE to add a new key\n"
    )

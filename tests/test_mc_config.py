"""Sweep config (probprune.mc.config): validation before any work, YAML/TOML/CLI loading, content hash."""
import json

import pytest

from probprune.cli import main
from probprune.core.errors import ProbPruneError
from probprune.mc import MCConfig, from_dict, load_config, run


def test_unknown_key_negative_trials_empty_sweep(tmp_path):
    with pytest.raises(ProbPruneError, match="unknown config key 'n_trails'"):
        from_dict({"n_trails": 10})
    with pytest.raises(ProbPruneError, match="n_trials must be >= 1"):
        MCConfig(n_trials=-5)
    with pytest.raises(ProbPruneError, match="empty sweep"):
        MCConfig(widths=(8,), depths=())
    with pytest.raises(ProbPruneError, match="empty sweep: no networks"):
        MCConfig()
    with pytest.raises(ProbPruneError, match="empty sweep: fractions"):
        MCConfig(widths=(8,), depths=(2,), fractions=())
    with pytest.raises(ProbPruneError, match="unknown method"):
        MCConfig(methods=("magnitud",))
    with pytest.raises(ProbPruneError, match="fractions must be in"):
        MCConfig(fractions=(1.5,))
    with pytest.raises(ProbPruneError, match="pgd_starts must be >= 64"):
        MCConfig(pgd_starts=8)
    with pytest.raises(ProbPruneError, match="deltas"):
        MCConfig(deltas=(0.0,))
    assert not list(tmp_path.iterdir())


def test_dataset_dimension_mismatch_fails_before_any_work(tmp_path):
    cfg = MCConfig(widths=(8,), depths=(2,), input_dim=10, dataset="digits", n_trials=2, batch_size=2)
    with pytest.raises(ProbPruneError, match="64 features"):
        run(cfg, out_root=tmp_path, workers=1, progress=False)
    assert not list(tmp_path.iterdir())  # no run folder created


def test_yaml_toml_overrides_and_hash(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("widths: [8, 16]\ndepths: [2]\nn_trials: 30\nmethods: [magnitude]\n")
    t = tmp_path / "c.toml"
    t.write_text('widths = [8, 16]\ndepths = [2]\nn_trials = 30\nmethods = ["magnitude"]\n')
    a, b = load_config(y), load_config(t)
    assert a == b and a.hash == b.hash and len(a.hash) == 32
    c = load_config(y, {"n_trials": 31})
    assert c.hash != a.hash and c.n_trials == 31
    assert from_dict(json.loads(a.canonical_json())).hash == a.hash  # round trip through JSON
    bad = tmp_path / "bad.yaml"
    bad.write_text("widths: [8]\nfoo: 1\n")
    with pytest.raises(ProbPruneError, match="unknown config key 'foo'"):
        load_config(bad)


def test_cli_bad_config_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("widths: [8]\nn_trials: -3\n")
    with pytest.raises(SystemExit) as e:
        main(["mc", "run", str(bad), "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: n_trials must be >= 1") and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as e:
        main(["mc", "run", str(tmp_path / "missing.yaml")])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["mc", "run", str(bad), "--set", "n_trials=10", "--set", "widths=[]", "--set", "depths=[]"])
    assert e.value.code == 2 and "empty sweep" in capsys.readouterr().err

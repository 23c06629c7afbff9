"""CLI: probprune prune / probprune lth (issue 3)."""
import json

import pytest
from typer.testing import CliRunner

from probprune.cli import app, main
from probprune.pruning import load_mask


def test_prune_json_and_mask_file(tmp_path):
    path = tmp_path / "m.pt"
    r = CliRunner().invoke(app, ["prune", "--method", "random", "--scheme", "erk", "--fraction", "0.8",
                                 "--arch", "mlp:32", "--dataset", "digits", "--epochs", "1",
                                 "--save-mask", str(path), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    rep = d["report"]
    assert abs(rep["realised_sparsity_maskable"] - 0.8) < 3 / rep["maskable_params"]
    assert rep["scheme"] == "erk" and rep["rounding"] == "floor"
    m = load_mask(path)
    assert sum(int(v.sum()) for v in m.values()) == rep["maskable_kept"]


def test_prune_human_output_structured_conv():
    r = CliRunner().invoke(app, ["prune", "--method", "structured", "--fraction", "0.5", "--arch", "lenet5",
                                 "--dataset", "digits", "--epochs", "0"])
    assert r.exit_code == 0, r.output
    assert "dead downstream" in r.output and "MACs per example" in r.output


def test_lth_json(tmp_path):
    out = tmp_path / "lth.csv"
    r = CliRunner().invoke(app, ["lth", "--dataset", "digits", "--arch", "mlp:32", "--levels", "2", "--epochs", "1",
                                 "--controls", "uniform", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["masks_nested"] and [row["level"] for row in d["rows"]] == [0, 1, 2]
    assert d["rows"][1]["remaining"] < 1.0 and "uniform_acc" in d["rows"][2]
    assert out.read_text().startswith("level,")


@pytest.mark.parametrize("argv,msg", [
    (["prune", "--method", "obs", "--fraction", "0.5", "--dataset", "digits"], "'obs' is not one of"),
    (["prune", "--method", "magnitude", "--fraction", "1.0", "--dataset", "digits", "--epochs", "0"], "--fraction"),
    (["prune", "--method", "random", "--scheme", "xyz", "--fraction", "0.5", "--dataset", "digits", "--epochs", "0"],
     "--scheme"),
    (["prune", "--method", "magnitude", "--fraction", "0.5", "--dataset", "cifar10"], "--dataset"),
    (["lth", "--dataset", "digits", "--retrain", "restart", "--levels", "1"], "--retrain"),
])
def test_cli_errors(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and msg in err and "Traceback" not in err


def test_prune_saved_model_round_trip(tmp_path):
    path = tmp_path / "model.pt"
    r = CliRunner().invoke(app, ["prune", "--method", "magnitude", "--fraction", "0.5", "--arch", "mlp:16",
                                 "--dataset", "digits", "--epochs", "1", "--save-model", str(path), "--json"])
    assert r.exit_code == 0, r.output
    acc = json.loads(r.stdout)["pruned_test_acc"]
    r2 = CliRunner().invoke(app, ["prune", "--method", "magnitude", "--fraction", "0.5",
                                  "--model", str(path), "--dataset", "digits", "--epochs", "0", "--json"])
    assert r2.exit_code == 0, r2.output
    d = json.loads(r2.stdout)
    # the saved model is already 50% magnitude-pruned: re-pruning at 50% per layer changes nothing
    assert d["dense_test_acc"] == acc and d["pruned_test_acc"] == acc
    assert d["arch"] == "mlp:16"  # the stored architecture, read with the model (modelio.load_model_and_arch)


def test_load_model_and_arch_reads_the_stored_name(tmp_path):
    """modelio, the one model reader: the name stored by save_model, the given one first, None for a module."""
    import torch

    from probprune.net.io import load_model_and_arch, save_model
    from probprune.net.zoo import build_model

    net = build_model("mlp:8", (64,), 10, seed=0)
    save_model(net, str(tmp_path / "sd.pt"), arch="mlp:8", input_shape=[64])
    torch.save(net, tmp_path / "mod.pt")
    m, arch = load_model_and_arch(str(tmp_path / "sd.pt"))
    assert arch == "mlp:8" and all(torch.equal(a, b) for a, b in zip(m.state_dict().values(),
                                                                      net.state_dict().values()))
    assert load_model_and_arch(str(tmp_path / "mod.pt"))[1] is None


def test_deprecated_spellings_still_work(capsys, tmp_path):
    """Old scripts: prune --sparsity, --model NAME (architecture), --model-file PATH; lth --target-sparsity."""
    path = tmp_path / "model.pt"
    with pytest.raises(SystemExit) as e:
        main(["prune", "--method", "magnitude", "--sparsity", "0.5", "--model", "mlp:16", "--dataset", "digits",
              "--epochs", "0", "--save-model", str(path), "--json"])
    assert e.value.code == 0
    cap = capsys.readouterr()
    assert "--sparsity is deprecated" in cap.err and "--model NAME is deprecated" in cap.err
    assert json.loads(cap.out)["fraction"] == 0.5
    with pytest.raises(SystemExit) as e:
        main(["prune", "--method", "magnitude", "--sparsity", "0.5", "--model", "mlp:16", "--model-file", str(path),
              "--dataset", "digits", "--epochs", "0", "--json"])
    assert e.value.code == 0 and "--model-file PATH is deprecated" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["lth", "--dataset", "digits", "--model", "mlp:8", "--levels", "1", "--epochs", "1",
              "--target-sparsity", "0.5", "--json"])
    cap = capsys.readouterr()
    assert e.value.code == 0 and "--target-sparsity is deprecated" in cap.err
    assert json.loads(cap.out)["fraction"] == 0.5

"""SAMT with Dropout and BatchNorm: one step sees one network.

Within one ``SAMT.step`` every pass must use the Dropout masks of the first forward, and
BatchNorm running statistics must move exactly once (as one forward of Adam's step would move
them). The references below are written from first principles in float64.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from samt.optim import SAMT
from samt.optim.blocks import SAMTModelError, split_units

ETA = 0.1


def _bn_dropout_mlp(p: float = 0.5) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(p),
                          nn.Linear(6, 3)).double()
    with torch.no_grad():  # non-trivial affine parameters
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.2, 0.2)
    return model


def _batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,),
                                                                              generator=g)


class _Recorder:
    """Records, for every call of the layer after the Dropout, the ReLU output and its input."""

    def __init__(self, relu: nn.Module, after: nn.Module) -> None:
        self.relu_out: list[torch.Tensor] = []
        self.dropped: list[torch.Tensor] = []
        relu.register_forward_hook(lambda m, i, o: self.relu_out.append(o.detach().clone()))
        after.register_forward_pre_hook(lambda m, i: self.dropped.append(i[0].detach().clone()))

    def masks(self) -> list[torch.Tensor]:
        """The mask each pass applied (entries where the ReLU output is 0 carry no information
        and are set to 0)."""
        out = []
        for a, d in zip(self.relu_out, self.dropped, strict=True):
            mask = torch.where(a != 0, d / torch.where(a != 0, a, 1.0), torch.zeros_like(a))
            out.append(mask)
        return out


def _reference_fixed_step(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor,
                          mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Block-alternating gradient descent (bottom-up, fixed step ETA) on the model's math with a
    fixed dropout mask and training-mode BatchNorm; returns the new parameters and running
    statistics."""
    w0, b0 = model[0].weight.detach().clone(), model[0].bias.detach().clone()
    gamma, beta = model[1].weight.detach().clone(), model[1].bias.detach().clone()
    w1, b1 = model[4].weight.detach().clone(), model[4].bias.detach().clone()
    eps = model[1].eps

    def loss_of(w0, b0, gamma, beta, w1, b1):
        z = x @ w0.T + b0
        mean, var = z.mean(0), z.var(0, unbiased=False)
        a = torch.relu((z - mean) / torch.sqrt(var + eps) * gamma + beta)
        return F.cross_entropy((a * mask) @ w1.T + b1, y)

    # The bottom block (Linear + BatchNorm affine) first, with the gradient at the current weights.
    bottom = [t.requires_grad_() for t in (w0, b0, gamma, beta)]
    grads = torch.autograd.grad(loss_of(*bottom, w1, b1), bottom)
    w0, b0, gamma, beta = ((t - ETA * g).detach() for t, g in zip(bottom, grads, strict=True))
    # Then the top block, seeing the moved bottom block through the same mask.
    top = [w1.requires_grad_(), b1.requires_grad_()]
    g_w1, g_b1 = torch.autograd.grad(loss_of(w0, b0, gamma, beta, *top), top)
    w1, b1 = (w1 - ETA * g_w1).detach(), (b1 - ETA * g_b1).detach()
    # Running statistics: one update, from the batch at the weights before the step.
    with torch.no_grad():
        z = x @ model[0].weight.T + model[0].bias
    momentum = model[1].momentum
    running_mean = (1 - momentum) * model[1].running_mean + momentum * z.mean(0)
    running_var = (1 - momentum) * model[1].running_var + momentum * z.var(0, unbiased=True)
    return {"0.weight": w0, "0.bias": b0, "1.weight": gamma, "1.bias": beta,
            "4.weight": w1, "4.bias": b1, "1.running_mean": running_mean,
            "1.running_var": running_var}


def test_fixed_step_matches_first_principles_with_dropout_and_batchnorm():
    model = _bn_dropout_mlp()
    before = copy.deepcopy(model)
    recorder = _Recorder(model[2], model[4])
    # Bottom-up: the top block's gradient needs a second pass through the moved bottom block,
    # its BatchNorm and its Dropout.
    opt = SAMT(model, F.cross_entropy, combine="fixed", eta0=ETA, eta_max=1.0, order="bottom_up")
    x, y = _batch()
    opt.step(x, y)
    assert len(recorder.relu_out) == 2  # the first forward and the pass after the bottom moved
    first, second = recorder.masks()
    both = (recorder.relu_out[0] != 0) & (recorder.relu_out[1] != 0)
    assert torch.equal(first[both], second[both])  # the second pass reused the first's mask
    mask = torch.where(recorder.relu_out[0] != 0, first, second)
    assert set(torch.unique(mask).tolist()) == {0.0, 2.0}
    expected = _reference_fixed_step(before, x, y, mask)
    state = model.state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(state[name], value, rtol=1e-10, atol=1e-12, msg=name)
    assert int(state["1.num_batches_tracked"]) == 1


@pytest.mark.parametrize("meta_mode", ["exact", "lookahead", "hypergradient"])
@pytest.mark.parametrize("step_type", ["scalar", "element"])
def test_batchnorm_running_statistics_move_once_per_step(meta_mode, step_type):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Linear(8, 3), nn.BatchNorm1d(3)).double()
    opt = SAMT(model, F.cross_entropy, step_type=step_type, meta_mode=meta_mode, eta0=0.05,
               eta_max=0.3)
    x, y = _batch()
    for steps in (1, 2, 3):
        bns = [m for m in model if isinstance(m, nn.BatchNorm1d)]
        with torch.no_grad():  # the reference: one training-mode forward at the current weights
            reference = copy.deepcopy(model)
            reference(x)
        opt.step(x, y)
        for bn, ref in zip(bns, [m for m in reference if isinstance(m, nn.BatchNorm1d)],
                           strict=True):
            assert int(bn.num_batches_tracked) == steps
            torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=0, atol=1e-14)
            torch.testing.assert_close(bn.running_var, ref.running_var, rtol=0, atol=1e-14)


class _FixedMask(nn.Module):
    """Deterministic stand-in for Dropout: multiplies by a mask set from outside."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * self.mask


@pytest.mark.parametrize("meta_mode", ["exact", "lookahead", "hypergradient"])
@pytest.mark.parametrize("step_type", ["scalar", "element"])
def test_dropout_step_equals_the_same_network_with_its_masks_fixed(meta_mode, step_type):
    """SAMT on a Dropout model does exactly what it does on the deterministic network that
    multiplies by the masks its first forward drew, in every pass (meta-passes included)."""
    p = 0.4
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Dropout(p), nn.Linear(6, 6), nn.Tanh(),
                         nn.Dropout(p), nn.Linear(6, 3)).double()
    twin = copy.deepcopy(base)
    fixed = [_FixedMask(), _FixedMask()]
    twin[2], twin[5] = fixed
    kwargs = dict(step_type=step_type, meta_mode=meta_mode, eta0=0.05, eta_max=0.3)
    torch.manual_seed(1)  # the eta models' initialization
    opt = SAMT(base, F.cross_entropy, **kwargs)
    torch.manual_seed(1)
    opt_twin = SAMT(twin, F.cross_entropy, **kwargs)
    seen: dict[int, list[torch.Tensor]] = {3: [], 6: []}
    for i in seen:  # the input of the layer after each Dropout: tanh output times the mask
        base[i].register_forward_pre_hook(
            lambda m, inp, i=i: seen[i].append(inp[0].detach() != 0))
    for step in range(4):
        x, y = _batch()
        x = x + step  # a different batch each step
        for kept in seen.values():
            kept.clear()
        opt.step(x, y)
        for kept in seen.values():
            assert len(kept) >= 2
            assert all(torch.equal(k, kept[0]) for k in kept[1:])  # one mask for every pass
            assert 0 < kept[0].double().mean() < 1
        for module, i in zip(fixed, (3, 6), strict=True):
            module.mask = seen[i][0].double() / (1.0 - p)
        opt_twin.step(x, y)
        for (name, a), b in zip(base.state_dict().items(), twin.state_dict().values(),
                                strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14, msg=name)
        for (name, a), b in zip(opt.meta.state_dict().items(),
                                opt_twin.meta.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14, msg=name)


def test_channel_dropout_masks_whole_channels():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.5),
                          nn.Flatten(), nn.Linear(4 * 5 * 5, 3)).double()
    inputs: list[torch.Tensor] = []
    model[4].register_forward_pre_hook(lambda m, inp: inputs.append(inp[0].detach()))
    opt = SAMT(model, F.cross_entropy, step_type="scalar", eta0=0.05, eta_max=0.3)
    x = torch.randn(8, 1, 5, 5, dtype=torch.float64).abs() + 0.1
    opt.step(x, torch.randint(0, 3, (8,)))
    channels = inputs[0].reshape(8, 4, 25)
    dead = (channels == 0).all(dim=2)
    alive = (channels != 0).any(dim=2)
    assert torch.equal(dead, ~alive) and dead.any()
    for later in inputs[1:]:
        assert torch.equal((later.reshape(8, 4, 25) == 0).all(dim=2) | ~alive, dead | ~alive)


def test_eval_mode_model_is_deterministic_under_samt():
    """In eval mode Dropout is the identity and BatchNorm uses (and keeps) its running stats."""
    model = _bn_dropout_mlp()
    model.eval()
    running = model[1].running_mean.clone()
    opt = SAMT(model, F.cross_entropy, step_type="scalar", eta0=0.05, eta_max=0.3)
    opt.step(*_batch())
    assert torch.equal(model[1].running_mean, running)
    assert int(model[1].num_batches_tracked) == 0


# --- structures SAMT must refuse or handle exactly -------------------------------------------


def test_a_reused_activation_runs_at_both_places():
    torch.manual_seed(0)
    act = nn.Tanh()
    model = nn.Sequential(nn.Linear(4, 5), act, nn.Linear(5, 5), act, nn.Linear(5, 3)).double()
    units = split_units(model)
    assert [len(u.modules) for u in units] == [2, 2, 1]
    twin = nn.Sequential(*[copy.deepcopy(m) for m in model])
    twin[3] = nn.Tanh()
    x, y = _batch()
    optimizers = []
    for m in (model, twin):
        torch.manual_seed(1)
        optimizers.append(SAMT(m, F.cross_entropy, step_type="scalar", eta0=0.05, eta_max=0.3))
    for _ in range(3):
        with torch.no_grad():
            expected = F.cross_entropy(model(x), y)  # the network model(x) really computes
        losses = [opt.step(x, y) for opt in optimizers]
        torch.testing.assert_close(losses[0], expected, rtol=0, atol=0)
        torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_tied_or_reused_layers_are_refused():
    shared = nn.Linear(5, 5)
    with pytest.raises(SAMTModelError, match="shared with child"):
        split_units(nn.Sequential(nn.Linear(4, 5), shared, nn.ReLU(), shared))
    a, b = nn.Linear(5, 5), nn.Linear(5, 5)
    b.weight = a.weight
    with pytest.raises(SAMTModelError, match="tied weights"):
        split_units(nn.Sequential(a, nn.ReLU(), b))


def test_frozen_layers_are_not_trained_and_half_frozen_ones_are_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 5), nn.ReLU(),
                          nn.Linear(5, 3)).double()
    for p in model[2].parameters():
        p.requires_grad_(False)
    frozen = model[2].weight.detach().clone()
    units = split_units(model)
    assert [u.weight for u in units] == [model[0].weight, model[4].weight]
    opt = SAMT(model, F.cross_entropy, step_type="element", eta0=0.05, eta_max=0.3)
    before = model[0].weight.detach().clone()
    opt.step(*_batch())
    assert torch.equal(model[2].weight, frozen)
    assert not torch.equal(model[0].weight, before)
    model[2].bias.requires_grad_(True)
    with pytest.raises(SAMTModelError, match="frozen weight but a trained bias"):
        split_units(model)


@pytest.mark.parametrize("module", [nn.AlphaDropout(0.2), nn.RReLU(),
                                    nn.InstanceNorm1d(5, track_running_stats=True)])
def test_modules_that_cannot_be_replayed_are_named(module):
    with pytest.raises(SAMTModelError, match=type(module).__name__):
        split_units(nn.Sequential(nn.Linear(4, 5), module, nn.Linear(5, 3)))


# --- the models' dropout and norm options -----------------------------------------------------


def test_model_options_add_dropout_and_batchnorm_layers():
    from samt.models import ModelConfigError, build_model

    mlp = build_model("mlp", (1, 8, 8), 10, hidden=[16, 16], dropout=0.5, input_dropout=0.2,
                      norm="batch")
    kinds = [type(m).__name__ for m in mlp]
    assert kinds == ["Flatten", "Dropout", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear",
                     "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert [m.p for m in mlp if isinstance(m, nn.Dropout)] == [0.2, 0.5, 0.5]
    plain = build_model("mlp", (1, 8, 8), 10, hidden=[16])
    assert not any(isinstance(m, (nn.Dropout, nn.BatchNorm1d)) for m in plain)
    cnn = build_model("cnn", (1, 8, 8), 10, channels=[4, 8], hidden=16, dropout=0.3, norm="batch")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in cnn) == 2
    assert sum(isinstance(m, nn.BatchNorm1d) for m in cnn) == 1
    assert [m.p for m in cnn if isinstance(m, nn.Dropout)] == [0.3]
    assert [len(u.modules) for u in split_units(cnn)] == [4, 5, 4, 1]  # Flatten joins conv 2
    with pytest.raises(ModelConfigError, match=r"model.dropout=1.0 .*\[0, 1\)"):
        build_model("mlp", (4,), 2, hidden=[3], dropout=1.0)
    with pytest.raises(ModelConfigError, match="model.norm='layer'.*none, batch"):
        build_model("cnn", (1, 8, 8), 2, norm="layer")


def test_cnn_with_batchnorm_and_dropout_trains_with_samt_end_to_end(tmp_path):
    import json

    from conftest import run_cli

    run = tmp_path / "run"
    code = run_cli(["model=cnn", "model.norm=batch", "model.dropout=0.2", "model.channels=[4,8]",
                    "model.hidden=16", "optimizer=samt_e", "dataset=digits", "epochs=2",
                    "progress=false", "device=cpu", f"hydra.run.dir={run}"])
    assert code in (None, 0)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert summary["final"]["test_metric"] > 50.0  # 10 digit classes: far above chance


@pytest.mark.parametrize("override, message", [
    ("model.dropout=1.5", "model.dropout=1.5 is invalid: must be < 1.0"),
    ("model.norm=group", "model.norm='group' is invalid: allowed: none, batch"),
])
def test_bad_model_options_are_config_errors(tmp_path, capsys, override, message):
    from conftest import run_cli

    run = tmp_path / "run"
    code = run_cli([override, "dataset=digits", "epochs=1", "progress=false",
                    f"hydra.run.dir={run}"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (run / "metrics.csv").exists()

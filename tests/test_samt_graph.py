"""SAMT's graph engine (``samt.optim.graph_passes``) against a brute-force reference.

The reference takes every gradient with a full forward and ``torch.autograd.grad`` at the
current weights, in block order, on a copy of the model (Dropout masks replayed by reseeding
torch's generator). The engine recomputes only what
moved; both must agree in float64 on residual sums, concatenations, a module used twice,
functional dropout and BatchNorm, and a ResNet.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from samt.models import resnet
from samt.optim import SAMT, SAMTModelError
from samt.optim.graph_passes import GraphPasses
from samt.optim.passes import SequentialPasses, build_passes

F64 = torch.float64


class Branches(nn.Module):
    """Two branches joined by a sum and by a concatenation; functional dropout."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 6)
        self.left = nn.Linear(6, 6)
        self.right = nn.Linear(6, 6)
        self.norm = nn.BatchNorm1d(6)
        self.out = nn.Linear(12, 3)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        a = torch.tanh(self.left(h)) + h
        b = F.dropout(torch.tanh(self.norm(self.right(h))), 0.3, self.training)
        return self.out(torch.cat([a, b], dim=1))


class Twice(nn.Module):
    """One Linear used at two places, with a Dropout between; a parameter of the root."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(4, 5)
        self.shared = nn.Linear(5, 5)
        self.drop = nn.Dropout(0.25)
        self.out = nn.Linear(5, 3)
        self.scale = nn.Parameter(torch.ones(5))

    def forward(self, x):
        h = torch.tanh(self.first(x))
        h = torch.tanh(self.shared(self.drop(h)))
        h = torch.tanh(self.shared(h)) * self.scale
        return self.out(h)


class Inplace(nn.Module):
    """torchvision's BasicBlock idioms: ReLU(inplace=True), ``out += identity``, ``relu_``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(2)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2)
        self.down = nn.Conv2d(1, 2, 1, bias=False)
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.down(x)
        out = (F.relu(out, inplace=True) - 0.1).relu_()
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def tiny_resnet() -> nn.Module:
    """A ResNet-20-like net (stem, BasicBlocks with BatchNorm, a projected shortcut), small,
    with Dropout before the head."""
    model = resnet((1, 6, 6), 3, depth=8, width=2)
    model.head = nn.Sequential(nn.Dropout(0.3), model.head)
    return model


NETS = {"branches": Branches, "twice": Twice, "inplace": Inplace, "resnet": tiny_resnet}


def _net(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return NETS[name]().to(F64)


def _batch(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    shape = (5, 1, 6, 6) if name in ("resnet", "inplace") else (5, 4)
    return torch.randn(shape, generator=g, dtype=F64), torch.randint(0, 3, (5,), generator=g)


def _reference_grad(model: nn.Module, params: list[torch.Tensor], x, y, seed: int):
    """A full forward (the step's Dropout masks: same seed) and backward at the current weights,
    on a copy of ``model`` (whose running statistics it leaves alone)."""
    names = {id(p): name for name, p in model.named_parameters()}
    twin = copy.deepcopy(model)
    own = dict(twin.named_parameters())
    torch.manual_seed(seed)
    loss = F.cross_entropy(twin(x), y)
    return loss.detach(), torch.autograd.grad(loss, [own[names[id(p)]] for p in params])


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("order", ["top_down", "bottom_up"])
def test_engine_gradients_equal_full_passes(name, order):
    """Each block's gradient, taken after the blocks before it moved, equals the brute force;
    in top-down order the pass also gives the previous block's gradient at its new weights
    (exact mode's g'), which must equal the brute force too."""
    model, (x, y) = _net(name), _batch(name)
    engine = build_passes(model)
    assert isinstance(engine, GraphPasses)
    blocks = engine.blocks
    seed = 7
    torch.manual_seed(seed)
    engine.forward(x)
    visits = range(len(blocks) - 1, -1, -1) if order == "top_down" else range(len(blocks))
    previous = None
    for k in visits:
        wanted = {k} if previous is None else {k, previous}
        loss, grads = engine.grads(wanted, y, F.cross_entropy)
        for j in wanted:
            ref_loss, ref = _reference_grad(model, blocks[j].params, x, y, seed)
            torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-14)
            for g, r in zip(grads[j], ref, strict=True):
                torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-13)
        with torch.no_grad():
            for p, g in zip(blocks[k].params, grads[k], strict=True):
                p.sub_(0.3 * g)
        engine.moved(k)
        previous = k
    engine.finish()


def test_running_statistics_move_once_per_step():
    model, (x, y) = _net("resnet"), _batch("resnet")
    twin = _net("resnet")
    SAMT(model, F.cross_entropy, eta0=0.05).step(x, y)
    twin(x)  # one plain forward in training mode
    for (k, v), w in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        if "running" in k or "num_batches" in k:
            torch.testing.assert_close(v, w, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(NETS))
def test_fixed_step_sweep_equals_brute_force_alternating_sgd(name):
    """combine=fixed: one SAMT step is alternating SGD with step eta0, block by block."""
    model, (x, y) = _net(name), _batch(name)
    ref = _net(name)
    eta = 0.2
    torch.manual_seed(3)
    SAMT(model, F.cross_entropy, combine="fixed", eta0=eta, eta_max=1.0).step(x, y)
    blocks = build_passes(ref).blocks
    torch.manual_seed(3)
    ref(x)  # the step's first forward: running statistics move once
    for k in range(len(blocks) - 1, -1, -1):
        _, grads = _reference_grad(ref, blocks[k].params, x, y, 3)
        with torch.no_grad():
            for p, g in zip(blocks[k].params, grads, strict=True):
                p.sub_(eta * g)
    for (key, a), b in zip(model.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13, msg=key)


def test_a_mode_switch_traces_again():
    """``F.dropout(x, p, self.training)``: the trace fixes the mode; in eval mode the step's
    loss is the deterministic one."""
    model, (x, y) = _net("branches"), _batch("branches")
    opt = SAMT(model, F.cross_entropy, eta0=0.05)
    opt.step(x, y)
    model.eval()
    with torch.no_grad():
        expected = F.cross_entropy(model(x), y)
    torch.testing.assert_close(opt.step(x, y), expected, rtol=1e-12, atol=0)


class Wrapped(nn.Module):
    """An nn.Sequential behind a plain module: SAMT takes it through the graph engine."""

    def __init__(self, inner: nn.Sequential):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def _chain(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Dropout(0.3),
                         nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(F64)


@pytest.mark.parametrize(("meta_mode", "step_type"), [
    ("exact", "element"), ("hypergradient", "scalar"), ("lookahead", "row")])
def test_graph_engine_equals_sequential_engine(meta_mode, step_type):
    """The same chain through both engines: the same weights and meta-parameters after a few
    steps, in every meta mode."""
    seq, graph = _chain(0), Wrapped(_chain(0))
    kwargs = {"meta_mode": meta_mode, "step_type": step_type, "eta0": 0.1, "meta_lr": 0.01}
    torch.manual_seed(11)  # the eta models' initialization
    a = SAMT(seq, F.cross_entropy, **kwargs)
    torch.manual_seed(11)
    b = SAMT(graph, F.cross_entropy, **kwargs)
    assert isinstance(a.passes, SequentialPasses) and isinstance(b.passes, GraphPasses)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        x, y = torch.randn(6, 4, generator=g, dtype=F64), torch.randint(0, 3, (6,), generator=g)
        torch.manual_seed(5)
        a.step(x, y)
        torch.manual_seed(5)
        b.step(x, y)
    for p, q in zip(seq.state_dict().values(), graph.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    for p, q in zip(a.meta.parameters(), b.meta.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_units_blocks_and_grouping_by_name():
    model = _net("resnet")
    engine = build_passes(model)
    names = [b.units[0].name for b in engine.blocks]
    assert names[0] == "conv" and names[-1] == "head.1"
    # a conv's BatchNorm joins it: the stem, 2 + 3 + 3 convs (two projections), the head
    assert len(names) == 10 and all(len(b.units) == 1 for b in engine.blocks)
    assert len(engine.blocks[0].params) == 3  # conv weight, BatchNorm weight and bias
    staged = build_passes(model, group_by=["stage1", "stage2"])
    assert [len(b.units) for b in staged.blocks] == [1, 2, 3, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="stage9"):
        build_passes(model, group_by=["stage9"])
    assert len(build_passes(model, group_size=0).blocks) == 1
    # an entry that lists prefixes makes one block of them: the stem with the first stage
    joined = build_passes(model, group_by=[["conv", "stage1"], "stage2"])
    assert [len(b.units) for b in joined.blocks] == [3, 3, 1, 1, 1, 1]
    assert [b.units[0].name for b in joined.blocks][:2] == ["conv", "stage2.0.conv1"]
    with pytest.raises(ValueError, match="stage9"):   # every prefix of a list must match
        build_passes(model, group_by=[["conv", "stage9"]])
    with pytest.raises(ValueError, match="lists of prefixes"):
        build_passes(model, group_by=[[], "stage2"])


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


def test_untraceable_model_gets_one_clear_error():
    with pytest.raises(SAMTModelError, match="Untraceable") as err:
        SAMT(Untraceable(), F.cross_entropy)
    assert "torch.fx" in str(err.value) and "group_size" in str(err.value)


class UntraceableWithState(nn.Module):
    """Control flow on a tensor value, BatchNorm and Dropout: trainable as one block."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.norm = nn.BatchNorm1d(6)
        self.drop = nn.Dropout(0.4)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        h = self.drop(torch.tanh(self.norm(self.fc(x))))
        return self.out(h if x.sum() > 0 else -h)


def test_one_block_needs_no_trace():
    """group_size=0 on a model fx cannot trace: a fixed step is SGD on the whole model, and in
    exact mode (a second pass) the masks are replayed and the running statistics move once."""
    (x, y), eta = _batch("branches"), 0.2
    torch.manual_seed(0)
    model = UntraceableWithState().to(F64)
    ref = copy.deepcopy(model)
    torch.manual_seed(4)
    SAMT(model, F.cross_entropy, group_size=0, combine="fixed", eta0=eta, eta_max=1.0).step(x, y)
    torch.manual_seed(4)
    loss = F.cross_entropy(ref(x), y)
    with torch.no_grad():
        for p, g in zip(ref.parameters(), torch.autograd.grad(loss, list(ref.parameters())),
                        strict=True):
            p.sub_(eta * g)
    for (key, a), b in zip(model.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14, msg=key)
    opt = SAMT(model, F.cross_entropy, group_size=0, eta0=0.05)  # exact: g' at the new weights
    torch.manual_seed(6)
    opt.step(x, y)
    assert int(model.norm.num_batches_tracked) == 2
    twin = copy.deepcopy(model)
    torch.manual_seed(6)  # the step's masks, at its new weights: exact mode's meta-loss
    with torch.no_grad():
        expected = F.cross_entropy(twin(x), y)
    assert opt.epoch_stats()["b0_meta_loss"] == pytest.approx(float(expected), rel=1e-12)


class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x + torch.randn_like(x))


class AddInPlace(Noisy):
    def forward(self, x):
        return self.fc(x).add_(self.fc(-x))


def test_unreplayable_randomness_and_two_value_in_place_ops_are_refused():
    with pytest.raises(SAMTModelError, match="randn_like"):
        SAMT(Noisy(), F.cross_entropy)
    with pytest.raises(SAMTModelError, match=r"in place .*add_"):
        SAMT(AddInPlace(), F.cross_entropy)


def test_torchvision_resnet18_steps():
    """The issue's acceptance line: SAMT on torchvision's ResNet-18, as it comes."""
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    model = models.resnet18(num_classes=10)
    opt = SAMT(model, F.cross_entropy, step_type="scalar", eta0=0.01, eta_max=0.05)
    assert len(opt.blocks) == 21  # 20 convs (with their BatchNorms) and the head
    before = model.conv1.weight.detach().clone()
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([1, 7])
    losses = [float(opt.step(x, y)) for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert not torch.equal(model.conv1.weight, before)
    assert int(model.bn1.num_batches_tracked) == 2  # one update per step


def test_samt_run_trains_a_resnet_on_digits(tmp_path):
    """``samt-run model=resnet dataset=digits``, one block per stage (the stem with the first),
    through the runner."""
    from helpers import digits_config

    from samt.train import run_training

    cfg = digits_config(tmp_path, "model=resnet", "model.depth=8", "model.width=4", "epochs=1",
                        "optimizer=samt_e", "optimizer.group_by=[[conv,stage1],stage2,stage3]")
    summary = run_training(cfg, tmp_path / "run")
    assert summary["status"] == "completed"
    assert summary["final"]["test_metric"] > 20.0  # chance is 10 %

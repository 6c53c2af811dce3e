from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from monai.losses import ContrastiveLoss

from semcl_components.losses import SemanticSupConLoss, positive_pair_mask

TAU, TAU_BASE = 0.3, 0.07


def loop_reference(embeddings, keys, tau=TAU, tau_base=TAU_BASE, intensities=None):
    """Per-anchor SupCon losses, one python float at a time, for the anchors that have a positive.

    With intensities, a non-positive a's denominator term is exp(w_ia * (s_ia - 1) / tau): the authors' code
    (MASILab/DCC_CL) multiplies the logit after subtracting its row max 1 / tau; the numerator is shifted alike.
    """
    vectors = [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in embeddings.tolist()]
    keys = keys.tolist()
    mu = None if intensities is None else intensities.tolist()
    n = len(vectors)

    def cosine(i, j):
        return sum(x * y for x, y in zip(vectors[i], vectors[j]))

    losses = {}
    for i in range(n):
        positives = [p for p in range(n) if p != i and keys[p] == keys[i]]
        if not positives:
            continue
        denominator = 0.0
        for a in range(n):
            if a == i:
                continue
            weight = 1.0 if mu is None or a in positives else max(0.0, 1.0 - abs(mu[i] - mu[a]))
            denominator += math.exp(weight * (cosine(i, a) - 1.0) / tau)
        terms = [(cosine(i, p) - 1.0) / tau - math.log(denominator) for p in positives]
        losses[i] = -(tau / tau_base) * sum(terms) / len(terms)
    return losses


def mean_of(losses):
    return sum(losses.values()) / len(losses)


def random_batch(n=10, dim=5, classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, classes, (n,), generator=generator)
    instance_ids = torch.arange(n) // 2  # two views per object
    intensities = torch.rand(n, generator=generator, dtype=torch.float64)
    return embeddings, labels, instance_ids, intensities


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_positives_match_loop_reference(seed):
    embeddings, labels, _, _ = random_batch(seed=seed)
    loss = SemanticSupConLoss()(embeddings, labels)
    assert loss.item() == pytest.approx(mean_of(loop_reference(embeddings, labels)), abs=1e-6)


def test_instance_positives_match_loop_reference():
    embeddings, labels, instance_ids, _ = random_batch(seed=3)
    loss = SemanticSupConLoss()(embeddings, instance_ids)
    assert loss.item() == pytest.approx(mean_of(loop_reference(embeddings, instance_ids)), abs=1e-6)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_instance_positives_over_two_views_equal_monai_contrastive_loss(temperature):
    """The SimCLR baseline: one whole-view embedding per view, instance positives, tau_base = tau is NT-Xent."""
    generator = torch.Generator().manual_seed(7)
    view0, view1 = torch.randn(2, 6, 16, generator=generator, dtype=torch.float64)
    instance_ids = torch.arange(6).repeat(2)  # row i of view 0 and row i of view 1 come from crop i
    ours = SemanticSupConLoss(temperature=temperature, base_temperature=temperature)(
        torch.cat([view0, view1]), instance_ids
    )
    monai_loss = ContrastiveLoss(temperature=temperature)(view0, view1)
    assert ours.item() == pytest.approx(monai_loss.item(), abs=1e-6)


@pytest.mark.parametrize("positives", ["class", "instance"])
def test_intensity_weighting_matches_loop_reference(positives):
    embeddings, labels, instance_ids, intensities = random_batch(seed=4)
    keys = labels if positives == "class" else instance_ids
    loss_fn = SemanticSupConLoss(temperature=0.5, base_temperature=0.1, intensity_weighting=True)
    loss = loss_fn(embeddings, keys, intensities)
    expected = mean_of(loop_reference(embeddings, keys, 0.5, 0.1, intensities))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_intensity_weights_are_clamped_at_zero():
    embeddings, labels, _, _ = random_batch(seed=5)
    intensities = torch.linspace(-1.0, 2.0, embeddings.shape[0], dtype=torch.float64)  # differences up to 3
    loss = SemanticSupConLoss(intensity_weighting=True)(embeddings, labels, intensities=intensities)
    assert loss.item() == pytest.approx(mean_of(loop_reference(embeddings, labels, intensities=intensities)), abs=1e-6)


def test_equal_intensities_give_the_unweighted_loss():
    embeddings, labels, _, _ = random_batch(seed=6)
    same = torch.full((embeddings.shape[0],), 0.4, dtype=torch.float64)
    weighted = SemanticSupConLoss(intensity_weighting=True)(embeddings, labels, intensities=same)
    assert weighted.item() == pytest.approx(SemanticSupConLoss()(embeddings, labels).item(), abs=1e-12)


def test_intensity_weighting_changes_the_loss():
    embeddings, labels, _, intensities = random_batch(seed=6)
    weighted = SemanticSupConLoss(intensity_weighting=True)(embeddings, labels, intensities=intensities)
    assert abs(weighted.item() - SemanticSupConLoss()(embeddings, labels).item()) > 1e-3


@pytest.mark.parametrize("intensity_weighting", [False, True])
def test_gradcheck(intensity_weighting):
    embeddings, labels, _, intensities = random_batch(n=7, dim=4, seed=7)
    embeddings.requires_grad_(True)
    loss_fn = SemanticSupConLoss(intensity_weighting=intensity_weighting)
    assert torch.autograd.gradcheck(lambda x: loss_fn(x, labels, intensities=intensities), (embeddings,))


def test_anchors_without_positive_are_left_out():
    embeddings, _, _, _ = random_batch(n=5, seed=8)
    labels = torch.tensor([0, 0, 1, 1, 2])  # the last sample has no positive
    per_anchor = loop_reference(embeddings, labels)
    assert sorted(per_anchor) == [0, 1, 2, 3]
    loss = SemanticSupConLoss()(embeddings, labels)
    assert loss.item() == pytest.approx(sum(per_anchor.values()) / 4, abs=1e-6)


def test_no_positive_pair_gives_zero_with_grad():
    embeddings = torch.randn(4, 3, requires_grad=True)
    loss = SemanticSupConLoss()(embeddings, torch.arange(4))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(embeddings.grad, torch.zeros_like(embeddings))


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_batch_gives_zero_with_grad(n):
    embeddings = torch.randn(n, 3, requires_grad=True)
    loss = SemanticSupConLoss(intensity_weighting=True)(embeddings, torch.zeros(n), intensities=torch.rand(n))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.isfinite(embeddings.grad).all()


def test_identical_embeddings_stay_finite():
    embeddings = torch.ones(4, 3, requires_grad=True)
    loss = SemanticSupConLoss(temperature=0.01)(embeddings, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(embeddings.grad).all()


def test_loss_and_gradients_do_not_depend_on_sample_order():
    embeddings, labels, _, intensities = random_batch(seed=9)
    order = torch.randperm(embeddings.shape[0], generator=torch.Generator().manual_seed(0))
    loss_fn = SemanticSupConLoss(intensity_weighting=True)
    first = embeddings.clone().requires_grad_(True)
    second = embeddings[order].clone().requires_grad_(True)
    loss_first = loss_fn(first, labels, intensities=intensities)
    loss_second = loss_fn(second, labels[order], intensities=intensities[order])
    loss_first.backward()
    loss_second.backward()
    assert loss_first.item() == pytest.approx(loss_second.item(), abs=1e-12)
    torch.testing.assert_close(first.grad[order], second.grad)


def test_embeddings_are_normalised_inside():
    embeddings, labels, _, _ = random_batch(seed=10)
    scales = torch.rand(embeddings.shape[0], 1, dtype=torch.float64) * 10 + 0.1
    loss_fn = SemanticSupConLoss()
    assert loss_fn(embeddings * scales, labels).item() == pytest.approx(loss_fn(embeddings, labels).item(), abs=1e-12)


def test_positive_pair_mask_counts_ordered_pairs():
    mask = positive_pair_mask(labels=torch.tensor([1, 2, 2, 1, 2, 2]))
    assert mask.dtype == torch.bool and not mask.diagonal().any()
    assert int(mask.sum()) == 2 + 12


def test_positive_pair_mask_follows_the_keys_given():
    class_ids, instance_ids = torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 1, 1])
    assert int(positive_pair_mask(class_ids).sum()) == 12
    assert int(positive_pair_mask(instance_ids).sum()) == 4
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        positive_pair_mask(torch.zeros(2, 2))


@pytest.mark.parametrize(
    "kwargs, shown",
    [
        ({"temperature": 0.0}, "0.0"),
        ({"temperature": -0.3}, "-0.3"),
        ({"temperature": float("nan")}, "nan"),
        ({"temperature": "0.3"}, "'0.3'"),
        ({"temperature": True}, "True"),
        ({"base_temperature": float("inf")}, "inf"),
        ({"intensity_weighting": 1}, "1"),
        ({"gather_distributed": "yes"}, "'yes'"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, shown):
    with pytest.raises(ValueError, match=f"{next(iter(kwargs))}.*{shown}"):
        SemanticSupConLoss(**kwargs)


@pytest.mark.parametrize(
    "embeddings, labels, shown",
    [
        (torch.randn(2, 4, 3), torch.zeros(2), r"\(2, 4, 3\)"),
        (torch.randn(4), torch.zeros(4), r"\(4,\)"),
        (torch.randn(4, 3), torch.zeros(5), r"\(5,\)"),
        (torch.randn(4, 3), torch.zeros(4, 1), r"\(4, 1\)"),
    ],
)
def test_wrong_shapes_are_reported(embeddings, labels, shown):
    with pytest.raises(ValueError, match=shown):
        SemanticSupConLoss()(embeddings, labels)


def test_integer_embeddings_are_rejected():
    with pytest.raises(ValueError, match="int64"):
        SemanticSupConLoss()(torch.ones(4, 3, dtype=torch.long), torch.zeros(4))


def test_missing_inputs_are_reported():
    embeddings = torch.randn(4, 3)
    with pytest.raises(TypeError, match="labels"):
        SemanticSupConLoss()(embeddings)
    with pytest.raises(ValueError, match="labels"):
        SemanticSupConLoss()(embeddings, None)
    with pytest.raises(ValueError, match="intensities"):
        SemanticSupConLoss(intensity_weighting=True)(embeddings, torch.zeros(4))
    with pytest.raises(ValueError, match=r"intensities.*\(3,\)"):
        SemanticSupConLoss(intensity_weighting=True)(embeddings, torch.zeros(4), intensities=torch.rand(3))


def test_gather_without_process_group_is_the_local_loss():
    embeddings, labels, _, _ = random_batch(seed=11)
    gathered = SemanticSupConLoss(gather_distributed=True)(embeddings, labels)
    assert gathered.item() == SemanticSupConLoss()(embeddings, labels).item()


# --- two gloo processes: rank losses averaged and gradients equal the single-process ones on the whole batch ---

WORLD_SIZE = 2
# name: (samples on rank 0, samples on rank 1, loss arguments, labels of the whole batch: random class ids (None),
# the instance ids of two views per object ("instance") or given)
SCENARIOS = {
    "class, different N": (5, 3, {}, None),
    "weighted, one rank empty": (6, 0, {"intensity_weighting": True}, None),
    "instance, equal N": (4, 4, {}, "instance"),
    "rank 1 holds only negatives": (4, 2, {}, torch.tensor([0, 0, 1, 1, 2, 3])),
    "no positive anywhere": (3, 2, {}, torch.arange(5)),
}


def scenario_batch(name):
    n0, n1, kwargs, labels = SCENARIOS[name]
    embeddings, random_labels, instance_ids, intensities = random_batch(n=n0 + n1, seed=list(SCENARIOS).index(name))
    if labels is None or isinstance(labels, str):
        labels = random_labels if labels is None else instance_ids
    loss_fn = SemanticSupConLoss(**kwargs, gather_distributed=True)
    return (n0, n1), loss_fn, embeddings, labels, intensities


def _distributed_worker(rank, port, results):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    try:
        for name in SCENARIOS:
            sizes, loss_fn, embeddings, labels, intensities = scenario_batch(name)
            part = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
            local = embeddings[part].clone().requires_grad_(True)
            loss = loss_fn(local, labels[part], intensities[part])
            loss.backward()
            results.put((name, rank, loss.item(), local.grad.tolist()))  # plain lists outlive the worker
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed_results():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.spawn(_distributed_worker, args=(port, results), nprocs=WORLD_SIZE, join=True)
    collected = {}
    while not results.empty():
        name, rank, loss, grad = results.get()
        collected[name, rank] = (loss, grad)
    return collected


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_two_ranks_equal_the_single_process_loss(distributed_results, name):
    _, loss_fn, embeddings, labels, intensities = scenario_batch(name)
    whole = embeddings.clone().requires_grad_(True)
    expected = loss_fn(whole, labels, intensities)
    expected.backward()

    rank_losses = [distributed_results[name, rank][0] for rank in range(WORLD_SIZE)]
    assert sum(rank_losses) / WORLD_SIZE == pytest.approx(expected.item(), abs=1e-6)
    # each rank's embeddings get the gradient of the rank losses' sum; DDP's averaging divides it by world_size
    grads = [torch.tensor(distributed_results[name, rank][1], dtype=torch.float64) for rank in range(WORLD_SIZE)]
    rank_grads = torch.cat([grad.reshape(-1, embeddings.shape[1]) for grad in grads])
    torch.testing.assert_close(rank_grads / WORLD_SIZE, whole.grad, atol=1e-6, rtol=0)


def test_docstring_names_the_page_with_the_derivations():
    page = Path(__file__).resolve().parents[1] / "docs" / "LOSS.md"
    assert "docs/LOSS.md" in SemanticSupConLoss.__doc__
    assert "world_size / V" in page.read_text(encoding="utf-8")  # the gathering's scaling is derived there

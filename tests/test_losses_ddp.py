"""TemporalInfoNCE with gather_distributed on 2 gloo processes equals the single-process loss."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from css_pose.losses import TemporalInfoNCE

WORLD = 2
B, P, K, D_IN, D = 6, 2, 2, 5, 4
# Video 0 and 1 appear on both ranks: cross-rank frames of the same video must be masked too.
VIDEO_IDS = torch.tensor([0, 1, 2, 0, 3, 1])


def _inputs():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(B, 1 + P + K, D_IN, generator=g, dtype=torch.float64)
    weight = torch.randn(D_IN, D, generator=g, dtype=torch.float64)
    return feats, weight


def _loss_and_grads(feats, weight, ids, gather):
    """Embeddings = feats @ weight (weight plays a shared model parameter)."""
    weight = weight.clone().requires_grad_()
    emb = torch.einsum("bfi,id->bfd", feats, weight)
    emb.retain_grad()
    loss = TemporalInfoNCE(temperature=0.2, gather_distributed=gather)(
        emb[:, 0], emb[:, 1 : 1 + P], emb[:, 1 + P :], ids
    )
    loss.backward()
    return loss.detach(), emb.grad, weight.grad


def _worker(rank, port, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        feats, weight = _inputs()
        part = slice(rank * B // WORLD, (rank + 1) * B // WORLD)
        loss, emb_grad, weight_grad = _loss_and_grads(feats[part], weight, VIDEO_IDS[part], True)
        # What DDP does to parameter gradients: all-reduce and divide by the world size.
        dist.all_reduce(weight_grad)
        weight_grad /= WORLD
        torch.save(
            {"loss": loss, "emb_grad": emb_grad, "weight_grad": weight_grad},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gathered_loss_and_gradients_match_single_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    feats, weight = _inputs()
    loss, emb_grad, weight_grad = _loss_and_grads(feats, weight, VIDEO_IDS, False)
    # Without gathering the two halves would see fewer negatives and give another loss.
    half = _loss_and_grads(feats[: B // 2], weight, VIDEO_IDS[: B // 2], False)[0]
    assert abs(half - loss) > 1e-3

    mean_loss = sum(r["loss"] for r in ranks) / WORLD
    assert abs(mean_loss - loss) < 1e-6
    # Each rank's frame gradient is d(sum of rank losses)/d(its frames) (the gather's backward
    # sums over ranks), i.e. WORLD times the gradient of the mean loss; DDP's 1/WORLD averaging
    # of parameter gradients turns it into exactly the single-process parameter gradient.
    rank_emb_grad = torch.cat([r["emb_grad"] for r in ranks]) / WORLD
    torch.testing.assert_close(rank_emb_grad, emb_grad, atol=1e-6, rtol=0)
    for r in ranks:
        torch.testing.assert_close(r["weight_grad"], weight_grad, atol=1e-6, rtol=0)

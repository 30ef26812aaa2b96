r"""Training throughput of the energy network (samples/s), JAX/Flax NNX vs the same architecture in PyTorch.

What it measures, side by side in one run, on this machine's CPU:

1. ``seed`` architecture on 5 x 5 x 2 windows: conv (32, 32, 16) 3x3 ``same`` + BatchNorm + ReLU, dense
   (64, 32, 16), head; the LUXE seed design.
2. ``default`` architecture on 5 x 5 x 2 windows: the same layers with ``valid`` padding (5x5 -> 3x3 ->
   1x1, then a pointwise layer), diffcalo's default for small windows.
3. ``seed`` architecture (``same`` padding, 2x2 average pooling) on LUXE full images 20 x 11 x 110.

JAX: :func:`diffcalo.reco.train` itself (one jitted ``lax.scan`` per epoch, Adam, MSE on
E = E_cal (1 + out)); the time per epoch after the compiling first epoch, augmentation off.
PyTorch (``torch==2.13.0``, CPU, its default threads): the textbook loop (index a mini-batch,
forward, MSE, backward, Adam step) on tensors in memory. Same batch size (256), same data.

Then the accuracy side of the architecture choice: on 100k simulated 5x5x2 clusters (SpaCal-Pb
region, photons 2-50 GeV) both JAX architectures are trained to convergence (early stopping) and their
energy resolution on 50k test clusters is printed, with the wall time of the full run (compilation
included): the "under a minute per design point" figure.

Run from the repository root (about 6 minutes on 2 cores; ``--quick`` about 1)::

    .venv/bin/pip install torch==2.13.0      # benchmark-only dependency
    .venv/bin/python benchmarks/bench_train.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import diffcalo as dc
from diffcalo import metrics
from diffcalo.reco import Inputs, ModelConfig, TrainConfig, prepare, train
from diffcalo.reco.classical import ClassicalReco

BATCH = 256


def synthetic_inputs(n, shape, n_features, seed=0):
    rng = np.random.default_rng(seed)
    e = rng.uniform(2.0, 50.0, n).astype(np.float32)
    s = e * (1 + 0.05 * rng.normal(size=n)).astype(np.float32)
    return Inputs(images=jnp.asarray(rng.random((n,) + shape, dtype=np.float32)),
                  scalars=jnp.asarray(rng.random((n, n_features), dtype=np.float32)),
                  vectors=jnp.zeros((n, 0, 2), jnp.float32), base=jnp.asarray(s[:, None]),
                  scale=jnp.asarray(s[:, None]), target=jnp.asarray(e[:, None]), e_true=jnp.asarray(e))


def jax_throughput(inp: Inputs, model: ModelConfig, epochs: int) -> float:
    val = inp.take(slice(0, 256))
    net = train("energy", inp, val, model_config=model, progress=False,
                config=TrainConfig(epochs=epochs, patience=epochs, batch_size=BATCH, augment=False, schedule="constant"))
    per_epoch = np.median(net.history["epoch_seconds"][1:])
    return (inp.n // BATCH) * BATCH / per_epoch


def torch_model(model: ModelConfig, shape, n_features):
    import torch
    from torch import nn

    h, w, c = shape
    plan, (ho, wo) = model.plan(h, w)
    layers, c_in = [], c
    for (k, pad, pool), c_out in zip(plan, model.conv):
        layers.append(nn.Conv2d(c_in, c_out, k, padding=(k // 2 if pad == "same" else 0)))
        if model.batch_norm:
            layers.append(nn.BatchNorm2d(c_out, momentum=0.1))
        layers.append(nn.ReLU())
        if pool:
            layers.append(nn.AvgPool2d(2))
        c_in = c_out

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(*layers)
            dense, width = [], ho * wo * c_in + n_features
            for d in model.dense:
                dense += [nn.Linear(width, d), nn.ReLU()]
                width = d
            self.dense = nn.Sequential(*dense, nn.Linear(width, 1))

        def forward(self, x, f):
            return self.dense(torch.cat([self.conv(x).flatten(1), f], 1))

    return Net()


def torch_throughput(inp: Inputs, model: ModelConfig, epochs: int) -> float:
    import torch

    torch.manual_seed(0)
    shape = tuple(inp.images.shape[1:])
    net = torch_model(model, shape, inp.features.shape[1])
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    x = torch.from_numpy(np.asarray(inp.images).transpose(0, 3, 1, 2).copy())
    f = torch.from_numpy(np.array(inp.features))
    base = torch.from_numpy(np.array(inp.base[:, 0]))
    y = torch.from_numpy(np.array(inp.target[:, 0]))
    steps = inp.n // BATCH
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(inp.n)
        for i in range(steps):
            idx = perm[i * BATCH:(i + 1) * BATCH]
            opt.zero_grad()
            pred = base[idx] * (1 + net(x[idx], f[idx])[:, 0])
            loss = torch.mean((pred - y[idx]) ** 2)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return steps * BATCH / np.median(times[1:])


def accuracy(n_train: int, n_test: int):
    det = dc.Detector.from_layout(dc.layout.lhcb_upgrade2_baseline())
    sims = []
    for seed, n in ((1, n_train), (2, n_train // 5), (3, n_test)):
        p = dc.gun(jax.random.key(seed), n, det.layout, region="spacal-pb", energy=dc.uniform_energy(2.0, 50.0))
        sims.append(dc.simulate(det, p, key=jax.random.key(seed + 10), mode="realistic"))
    classical = ClassicalReco.fit(sims[0], z_mm=det.layout.z_mm)
    tr, va, te = (prepare("energy", c, classical)[0] for c in sims)
    e = np.asarray(te.e_true)
    rows = [("classical sum", None, metrics.energy_curve(e, np.asarray(te.base[:, 0]), bins=6), 0.0, 0)]
    for name, model in (("seed (same)", ModelConfig(padding="same")), ("default (valid)", ModelConfig())):
        t0 = time.perf_counter()
        net = train("energy", tr, va, model_config=model, config=TrainConfig(epochs=40), progress=False)
        wall = time.perf_counter() - t0
        rows.append((name, model, metrics.energy_curve(e, net.predict(te)[:, 0], bins=6), wall,
                     net.history["epochs_run"]))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    args = ap.parse_args()
    import torch

    n_win, n_img, epochs = (8192, 1024, 3) if args.quick else (51200, 4096, 4)
    print(f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), batch {BATCH}")
    cases = [("5x5x2 windows, seed arch (same)", (5, 5, 2), ModelConfig(padding="same"), n_win),
             ("5x5x2 windows, default arch (valid)", (5, 5, 2), ModelConfig(), n_win),
             ("LUXE 11x110x20 images, seed arch", (11, 110, 20), ModelConfig(), n_img)]
    print(f"\n{'case':40s} {'JAX samples/s':>14s} {'torch samples/s':>16s} {'JAX/torch':>10s}")
    for name, shape, model, n in cases:
        inp = synthetic_inputs(n, shape, 7)
        j = jax_throughput(inp, model, epochs)
        t = torch_throughput(inp, model, epochs)
        print(f"{name:40s} {j:14.0f} {t:16.0f} {j / t:9.2f}x", flush=True)
    n_train, n_test = (20000, 10000) if args.quick else (100000, 50000)
    print(f"\naccuracy: energy network on {n_train} SpaCal-Pb 5x5x2 clusters (photons 2-50 GeV), "
          f"{n_test} test clusters, resolution (core) per energy bin")
    rows = accuracy(n_train, n_test)
    energies = rows[0][2]["energy"]
    print(f"{'model':18s} {'wall s':>7s} {'epochs':>6s} " + " ".join(f"{e:6.1f}GeV" for e in energies) + "  mean rel. MAE")
    for name, _, curve, wall, ep in rows:
        print(f"{name:18s} {wall:7.1f} {ep:6d} " + " ".join(f"{100 * r:8.2f}%" for r in curve["resolution"])
              + f"  {100 * np.mean(curve['rel_mae']):.3f}%")


if __name__ == "__main__":
    main()

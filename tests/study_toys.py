"""Cheap objectives for the study-runner tests (module level: worker processes import them)."""

import os
import time


def toy_objective(config, design, seed):
    """A smooth function of the design, deterministic; sleeps ``TOY_SLEEP`` seconds."""
    time.sleep(float(os.environ.get("TOY_SLEEP", "0")))
    options = config.options
    score = sum(options.index(design[f"option_{i}"]) for i in range(config.regions))
    score += sum((design[f"ring_{i}"] - 3) ** 2 for i in range(config.regions - 1)) * 0.1
    # a per-region summary in the shape evaluate_layout gives (the report draws its resolution curves)
    regions = [dict(region=i, cell_mm=40.4, n=400, energy_curve=dict(energy=[2.0, 8.0, 32.0],
                                                                     resolution=[0.1 / 2 ** 0.5, 0.05, 0.025],
                                                                     resolution_err=[0.01, 0.005, 0.0025]),
                    energy_fit=dict(stochastic=0.1, constant=0.0, noise=0.0), energy_core=0.05,
                    position_core_mm=[3.0 + score, 3.0 + score]) for i in range(config.regions)]
    return dict(fom=float(score), cost=1.0, metrics=dict(score=score, seed=seed, regions=regions),
                timings=dict(simulate=0.0))


def failing_objective(config, design, seed):
    if design["ring_0"] % 2:
        raise FloatingPointError("NaN training loss")
    return toy_objective(config, design, seed)


def killing_objective(config, design, seed):
    """Kills its worker process: once for the first design it sees (the retry then succeeds), and every
    time for the design in ``TOY_KILL_ALWAYS`` (the task is finally lost)."""
    import json

    marker = os.environ.get("TOY_KILL_ONCE")
    if json.dumps(design, sort_keys=True) == os.environ.get("TOY_KILL_ALWAYS"):
        os._exit(1)
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return toy_objective(config, design, seed)


def affinity_objective(config, design, seed):
    """The toy objective, with the CPUs its worker may run on in the metrics."""
    out = toy_objective(config, design, seed)
    out["metrics"]["cpus"] = sorted(os.sched_getaffinity(0))
    return out


def nan_objective(config, design, seed):
    out = toy_objective(config, design, seed)
    out["fom"] = float("nan")
    return out


def worker_pid(seconds=1.0):
    """The PID of the worker process that runs it (after a pause, so that a pool starts several)."""
    time.sleep(seconds)
    return os.getpid()


def noisy_toy_objective(config, design, seed):
    """The toy objective plus Gaussian noise of sd 0.3 drawn from (design, seed), with that error recorded
    as the figure of merit's statistical error (``[optimizer] noise = "known"`` reads it)."""
    import json
    import zlib

    import numpy as np

    out = toy_objective(config, design, seed)
    rng = np.random.default_rng([zlib.crc32(json.dumps(design, sort_keys=True).encode()), seed])
    out["fom"] += 0.3 * float(rng.normal())
    out["metrics"]["pi0_resolution_err_mev"] = 0.3
    return out

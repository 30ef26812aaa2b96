r"""Continuous stack studies: the absorber and active thickness of one technology's layers (and optionally
its cell size and, with pile-up, the per-cell time window's half-width), optimised by L-GSO
(``[optimizer] kind = "lgso"``, the simulator as a black box) or by direct gradients through the
relaxed simulator (``kind = "gradient"``).

The problem is :func:`diffcalo.design_gradient.stack_problem` for ``[continuous] technology``, photons
log-uniform in ``[samples] photon_energy``: per photon, y = the 3 x 3 window energy of each readout
section divided by E and x = (ln E, the impact offset in the cell); the frozen reconstruction is a linear
calibration w of the section energies, and the objective is E (w . y - 1)^2 (the relative energy error
squared: resolution squared plus bias squared, averaged over the spectrum). The depth limit
``layers x (absorber + active) <= max_depth_mm`` is the known constraint every proposal meets. With
``pileup_radius_mm`` > 0 the photons hit an LHCb-size wall at that distance from the beam with the
pile-up of ``study.collisions`` overlaid; the calibration then has a pedestal and the objective is the
pseudo-Huber loss of E_rec / E - 1 (its square root the core resolution; see
:mod:`diffcalo.design_gradient`). ``cell_mm`` and ``window_sigmas`` add the cell size and the time window
to the design (journal designs then carry those keys too). ``reconstruction = "network"`` replaces the
linear calibration by the Flax energy network (:class:`diffcalo.design_gradient.NetCalibration`),
retrained wherever the calibration would be refitted and stored in its JSON form (a gradient step's
metrics, an L-GSO iteration's meta); a call's own fom stays the self-calibrated linear one.

The optimisers work in units of the problem's nominal design (u = psi / psi_nominal: the technology's
thicknesses, its smallest cell, 3 resolutions; so ``radius`` and ``learning_rate`` are fractions of
them); the journal records every simulator call's design in mm (and resolutions).

L-GSO (:class:`surrogates.lgso.LGSO`). Each iteration is one journal batch: the points it asks for
(Latin hypercube in the trust region, the centre last), each simulated with ``samples`` photons by a
worker (one evaluation per point; its fom is the point's self-calibrated rms of E_rec / E - 1). The rows
are kept in ``calls/<id>.npz`` of the run directory. When the batch is done, the calibration is refitted
on the centre's rows (the reconstruction retrained at every step, for free) and the optimiser told;
the journal then stores the optimiser's state (meta ``iteration_<k>``: centre, radius, step accepted,
the Adam state, the calibration) and ``surrogates/<k>.npz`` the trained surrogate's parameters.

Gradient (:class:`surrogates.gradient.GradientDescent`). Each step is one evaluation: the worker computes
the objective and its autodiff gradient at the design (4 independent batches: value and gradient with
their standard errors), refitting the calibration first every ``refit_every`` steps (else using the last
one, recorded in the evaluation's metrics).

Resume (``--resume``) rebuilds the optimiser from the journal: L-GSO from the last stored state plus the
replay reread from ``calls/`` batch by batch; the gradient run by re-telling its finished steps; an
unfinished batch is completed (the rows that were running are queued again), so the resumed run
proposes exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import functools
import math
import pathlib

import numpy as np

from diffcalo.errors import StudyError
from diffcalo.study.config import StudyConfig, require_study_config

__all__ = ["run_continuous", "simulate_call", "gradient_call", "geant4_rows", "stack_of", "continuous_summary",
           "write_continuous_report", "rms_label", "reconstruction"]

@functools.lru_cache(maxsize=8)
def _stack(technology, energy, max_depth_mm, bounds, parameters, pileup_radius_mm, collisions):
    import dataclasses

    from diffcalo.design_gradient import stack_problem

    pileup = None
    if pileup_radius_mm:
        from diffcalo.pileup import PileupModel

        pileup = PileupModel.default(collisions_per_crossing=collisions)
    prob = stack_problem(technology, energy_gev=energy, max_depth_mm=max_depth_mm or None, parameters=parameters,
                         pileup=pileup, position_mm=(pileup_radius_mm, 0.0))
    return dataclasses.replace(prob, bounds=bounds)


def stack_of(config: StudyConfig):
    """The :class:`~diffcalo.design_gradient.StackProblem` of a continuous study (cached per process)."""
    cfg = require_study_config(config)
    bounds = (tuple(cfg.absorber_range), tuple(cfg.active_range)) + \
        ((tuple(cfg.cell_range),) if cfg.cell_range else ()) + ((tuple(cfg.window_range),) if cfg.window_range else ())
    return _stack(cfg.stack_technology, tuple(cfg.photon_energy), float(cfg.max_depth_mm), bounds,
                  cfg.stack_parameters, float(cfg.pileup_radius_mm), float(cfg.collisions))


def _names(design) -> tuple[str, ...]:
    from diffcalo.design_gradient import PARAMETERS

    return tuple(k for k in PARAMETERS if k in design)


def _psi(design) -> np.ndarray:
    return np.array([float(design[k]) for k in _names(design)])


def _design(psi, names) -> dict:
    return {k: float(v) for k, v in zip(names, psi)}


def reconstruction(stored):
    """The frozen reconstruction from its stored (JSON) form: section weights (a list) or the energy
    network (:meth:`diffcalo.design_gradient.NetCalibration.to_dict`)."""
    from diffcalo.design_gradient import NetCalibration

    if isinstance(stored, dict):
        return NetCalibration.from_dict(stored)
    return np.asarray(stored, float)


def _stored(cal):
    """The JSON form of a reconstruction (:func:`reconstruction` reads it back)."""
    return cal.to_dict() if hasattr(cal, "to_dict") else np.asarray(cal, float).tolist()


def _refit(cfg, prob, x, y, seed):
    """The reconstruction refitted on rows (x, y) of one design: the linear calibration, or the energy
    network (``[continuous] reconstruction``)."""
    if cfg.stack_reconstruction == "network":
        import jax

        return prob.fit_network_rows(x, y, jax.random.key(seed))
    return prob.calibrate(x, y)


def geant4_rows(config: StudyConfig, psi, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Geant4 as the black box: n photons (log-uniform in the study's energies, uniform impact in the
    central cell, normal incidence) in the stack with thicknesses psi (mm); x = (ln E, dx / cell,
    dy / cell), y = the 3 x 3 window's energy in the active medium per readout section divided by E (no
    EM-scale factor: the linear calibration absorbs it). Runs in this process (a study worker)."""
    from diffcalo.geant4.backend import run_geant4

    cfg = require_study_config(config)
    prob = stack_of(cfg)
    rng = np.random.default_rng([int(seed), 0x6E4])
    lo, hi = (math.log(e) for e in cfg.photon_energy)
    loge = rng.uniform(lo, hi, n)
    off = rng.uniform(-0.5, 0.5, (n, 2))
    tech = prob.detector.technologies[prob.region].with_thickness(absorber_mm=float(psi[0]), active_mm=float(psi[1]))
    cell = float(psi[prob.parameters.index("cell_mm")]) if "cell_mm" in prob.parameters else prob.cell_mm
    e = np.exp(loge)
    parts = dict(pid=np.full(n, 22), energy=e, x=off[:, 0] * cell, y=off[:, 1] * cell,
                 tx=np.zeros(n), ty=np.zeros(n))
    out = run_geant4(tech, cell, parts, seed=int(seed), window=prob.window, executor="inprocess",
                     progress=False)
    y = out["cells"].sum(axis=(2, 3)) / e[:, None]
    return np.concatenate([loge[:, None], off], axis=1), y


def simulate_call(config: StudyConfig, design: dict, seed: int) -> dict:
    """One L-GSO simulator call (a worker): ``samples`` photons at the design (the parametric simulator
    or Geant4, ``[continuous] backend``); the rows come back with the point's self-calibrated rms of
    E_rec / E - 1 as its fom."""
    import jax

    cfg = require_study_config(config)
    prob = stack_of(cfg)
    if cfg.stack_backend == "geant4":
        x, y = geant4_rows(cfg, _psi(design), cfg.samples_per_point, seed)
    else:
        _, x, y = prob.simulate_rows(jax.random.key(seed), _psi(design), cfg.samples_per_point)
    w = prob.calibrate(x, y)
    rms = float(np.sqrt(np.mean(prob.loss(np.asarray(prob.residual(w, x, y))))))
    return dict(fom=rms, cost=None, metrics=dict(rms=rms, response=float(np.mean(y.sum(axis=1)))),
                rows=dict(x=np.asarray(x, np.float32), y=np.asarray(y, np.float32)))


def gradient_call(config: StudyConfig, design: dict, seed: int, calibration=None) -> dict:
    """One gradient step's evaluation (a worker): the objective and its autodiff gradient in mm at the
    design, with the calibration refitted first when ``calibration`` is None."""
    import jax

    cfg = require_study_config(config)
    prob = stack_of(cfg)
    key = jax.random.key(seed)
    n = cfg.samples_per_point
    psi = _psi(design)
    if calibration is None:
        _, x, y = prob.simulate_rows(jax.random.fold_in(key, 1), psi, n)
        cal = _refit(cfg, prob, x, y, seed)
    else:
        cal = reconstruction(calibration)
    value, value_err, grad, grad_err = prob.gradient_with_error(psi, cal, jax.random.fold_in(key, 2), n)
    if not (math.isfinite(value) and np.all(np.isfinite(grad))):
        raise FloatingPointError(f"objective {value!r}, gradient {grad.tolist()} at {design}")
    return dict(fom=float(value), cost=None,
                metrics=dict(value_err=value_err, gradient=grad.tolist(), gradient_err=grad_err.tolist(),
                             calibration=_stored(cal), refit=calibration is None))


def _space(cfg):
    """(nominal psi, start u, bounds in u, constraint in u) of a continuous study."""
    prob = stack_of(cfg)
    nominal = np.asarray(prob.psi0, float)
    bounds = np.array(prob.bounds, float) / nominal[:, None]
    u0 = np.asarray(cfg.stack_start, float) / nominal

    def constraint(u):
        return prob.depth_constraint(np.asarray(u) * nominal)

    return nominal, u0, bounds, constraint


def run_continuous(cfg: StudyConfig, run_dir, *, resume: bool = False, executor=None, progress: bool = True,
                   log=print, objective=None):
    """Run (or resume) a continuous study into ``run_dir`` (journal.sqlite, config.json, calls/,
    surrogates/); returns the open journal. ``objective`` replaces the worker function (tests)."""
    from diffcalo.study.runner import run_in_directory

    cfg = require_study_config(cfg)
    if not cfg.continuous:
        raise StudyError(f"optimizer.kind = {cfg.optimizer!r}: run_continuous runs 'lgso' or 'gradient' studies")
    drive = _drive_lgso if cfg.optimizer == "lgso" else _drive_gradient
    return run_in_directory(cfg, run_dir, None, resume, executor, log,
                            lambda journal, ex: drive(cfg, journal, pathlib.Path(run_dir), ex, progress, log, objective))


def _batches(journal) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for r in journal.records():
        out.setdefault(r["batch"], []).append(r)
    return out


def _seed(cfg, batch, j) -> int:
    return (cfg.seed * 1_000_003 + batch * 1009 + j) % (2 ** 31 - 1)


def _bar(cfg, total, initial, progress, unit):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=cfg.name, unit=unit, disable=not progress)


def _rows_of(run_dir, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    psi, xs, ys = [], [], []
    for r in rows:
        path = run_dir / "calls" / f"{r['id']:06d}.npz"
        try:
            with np.load(path) as f:
                x, y = f["x"], f["y"]
        except (OSError, KeyError, ValueError) as exc:
            raise StudyError(f"{path}: the rows of evaluation {r['id']} cannot be read ({exc}); the journal "
                             "says it is done: start a new run directory") from None
        psi.append(np.repeat(_psi(r["design"])[None], len(y), axis=0))
        xs.append(x)
        ys.append(y)
    return np.concatenate(psi), np.concatenate(xs), np.concatenate(ys)


def _keep_rows(run_dir):
    def keep(eid, res):
        import io

        from diffcalo.io import write_bytes_atomic

        rows = res.pop("rows")
        buf = io.BytesIO()
        np.savez(buf, x=rows["x"], y=rows["y"])
        (run_dir / "calls").mkdir(exist_ok=True)
        write_bytes_atomic(run_dir / "calls" / f"{eid:06d}.npz", buf.getvalue())
    return keep


def _run_rows(rows, journal, executor, fn, cfg, bar, log, keep=None):
    from diffcalo.study.runner import _run_batch

    _run_batch(rows, journal, executor, fn, cfg, bar, None, log, keep=keep)
    ids = {r["id"] for r in rows}
    return [r for r in journal.records() if r["id"] in ids]


def _same_points(rows, points, where) -> None:
    got = np.array([_psi(r["design"]) for r in rows])
    if got.shape != points.shape or not np.allclose(got, points, rtol=1e-9, atol=1e-12):
        raise StudyError(f"{where}: the journal's designs differ from what the optimiser proposes on replay "
                         "(the journal was edited, or the config or diffcalo changed); start a new run directory")


def _drive_lgso(cfg, journal, run_dir, executor, progress, log, objective) -> None:
    import optax

    from surrogates.lgso import LGSO

    prob = stack_of(cfg)
    nominal, u0, bounds, constraint = _space(cfg)
    fn = objective or simulate_call
    opts = dict(optimizer=optax.adam(cfg.learning_rate), constraint=constraint,
                progress=(lambda m: log(m)) if progress else None)
    batches = _batches(journal)
    done_states = sorted(int(k) for k in range(len(batches)) if journal.get_meta(f"iteration_{k:04d}") is not None)
    if done_states:
        last = done_states[-1]
        meta = journal.get_meta(f"iteration_{last:04d}")
        opt = LGSO.from_dict(meta["state"], prob.objective(reconstruction(meta["calibration"])), **opts)
        for k in range(last + 1):
            opt.add_rows(*_told(cfg, run_dir, batches[k], nominal))
        start = last + 1
        log(f"resume: L-GSO restored after iteration {last} (centre {_design(opt.centre * nominal, prob.parameters)})")
    else:
        opt = LGSO(u0, prob.objective(prob.identity_calibration()), y_dim=prob.n_sections, x_dim=3,
                   bounds=bounds, radius=cfg.radius, samples_per_point=cfg.samples_per_point, model=cfg.lgso_model,
                   seed=cfg.seed, **opts)
        start = 0
    per = opt.n_points + 1
    bar = _bar(cfg, cfg.iterations * per, sum(r["status"] in ("done", "failed") for r in journal.records()), progress,
               "call")
    keep = _keep_rows(run_dir)
    try:
        for k in range(start, cfg.iterations):
            if opt.converged:
                log(f"L-GSO converged after iteration {k - 1}: three steps rejected at the smallest trust region")
                break
            points = opt.ask()
            if k in batches:
                rows = batches[k]
                _same_points(rows, points * nominal, f"{journal.path} batch {k}")
            else:
                journal.add([_design(p * nominal, prob.parameters) for p in points],
                            [_seed(cfg, k, j) for j in range(len(points))],
                            batch=k)
                rows = [r for r in journal.records() if r["batch"] == k]
            rows = _run_rows(rows, journal, executor, fn, cfg, bar, log, keep=keep)
            psi_u, x, y = _told(cfg, run_dir, rows, nominal)
            centre = rows[-1]
            if centre["status"] != "done":
                raise StudyError(f"evaluation {centre['id']} (the trust region's centre, iteration {k}) failed: "
                                 f"{centre.get('error')}; the step cannot be judged without it")
            m = len(y) // sum(r["status"] == "done" for r in rows)
            cal = _refit(cfg, prob, x[-m:], y[-m:], _seed(cfg, k, 999))   # the centre: the last call
            opt.set_objective(prob.objective(cal))
            record = opt.tell(psi_u, x, y)
            if record is None:
                raise StudyError(f"iteration {k}: the optimiser did not complete (the centre's rows were not told)")
            journal.set_meta(f"iteration_{k:04d}", dict(state=opt.to_dict(replay=False), calibration=_stored(cal),
                                                        record=_plain(record, nominal),
                                                        parameters=list(prob.parameters)))
            if opt.model is not None:
                (run_dir / "surrogates").mkdir(exist_ok=True)
                np.savez(run_dir / "surrogates" / f"{k:04d}.npz",
                         *[np.asarray(v, np.float32) for v in opt.model.state_dict()["leaves"]])
            bar.set_postfix_str(f"objective {record['value']:.3g} ± {record['sem']:.1g}")
    finally:
        bar.close()


def _told(cfg, run_dir, rows, nominal):
    """The done rows of one batch as (u, x, y) in journal order."""
    ok = [r for r in rows if r["status"] == "done"]
    psi, x, y = _rows_of(run_dir, ok)
    return psi / nominal, x, y


def _plain(record, nominal) -> dict:
    """An L-GSO iteration record with the centre and proposal also in mm."""
    out = {k: v for k, v in record.items() if k not in ("gradient",)}
    out["gradient_u"] = record.get("gradient")
    out["centre_mm"] = (np.asarray(record["centre"]) * nominal).tolist()
    out["proposal_mm"] = (np.asarray(record["proposal"]) * nominal).tolist()
    return out


def _drive_gradient(cfg, journal, run_dir, executor, progress, log, objective) -> None:
    import optax

    from surrogates.gradient import GradientDescent

    nominal, u0, bounds, constraint = _space(cfg)
    names = stack_of(cfg).parameters
    opt = GradientDescent(u0, optimizer=optax.adam(cfg.learning_rate), bounds=bounds, max_step=cfg.radius,
                          constraint=constraint)
    fn = objective or gradient_call
    batches = _batches(journal)
    calibration = None
    bar = _bar(cfg, cfg.iterations, sum(r["status"] in ("done", "failed") for r in journal.records()), progress, "step")
    try:
        for k in range(cfg.iterations):
            refit = k % cfg.refit_every == 0 or calibration is None
            if k in batches:
                rows = batches[k]
                _same_points(rows, opt.ask()[None] * nominal, f"{journal.path} step {k}")
            else:
                journal.add([_design(opt.ask() * nominal, names)], [_seed(cfg, k, 0)], batch=k)
                rows = [r for r in journal.records() if r["batch"] == k]
            if rows[0]["status"] != "done":
                rows = _run_rows(rows, journal, executor,
                                 functools.partial(fn, calibration=None if refit else calibration), cfg, bar, log)
            r = rows[0]
            if r["status"] != "done":
                raise StudyError(f"evaluation {r['id']} (step {k}) failed: {r.get('error')}")
            calibration = r["metrics"]["calibration"]
            grad_u = np.asarray(r["metrics"]["gradient"]) * nominal
            opt.tell(opt.ask(), r["fom"], grad_u)
            bar.set_postfix_str(f"objective {r['fom']:.3g} ± {r['metrics']['value_err']:.1g}")
    finally:
        bar.close()


def continuous_summary(journal) -> dict:
    """The path of a continuous study: per iteration the centre (mm), the objective at it with its
    standard error, and whether the step was accepted (L-GSO) or the gradient (gradient runs)."""
    from diffcalo.study.config import study_config_from_flat

    cfg = study_config_from_flat(journal.config)
    path = []
    if cfg.optimizer == "lgso":
        k = 0
        while (meta := journal.get_meta(f"iteration_{k:04d}")) is not None:
            rec = meta["record"]
            path.append(dict(iteration=k, design=_design(rec["centre_mm"], cfg.stack_parameters), value=rec["value"],
                             sem=rec["sem"],
                             accepted=rec["accepted"], radius=rec["radius"], calibration=meta["calibration"]))
            k += 1
    else:
        for r in journal.records("done"):
            path.append(dict(iteration=r["batch"], design=r["design"], value=r["fom"], sem=r["metrics"]["value_err"],
                             gradient=r["metrics"]["gradient"], calibration=r["metrics"]["calibration"]))
    return dict(config=cfg, path=path, calls=len(journal.records("done")))


def rms_label(value: float, sem: float, core: bool = False) -> str:
    """The objective E (E_rec/E - 1)^2 as its square root in per cent with the propagated error:
    "rms E_rec/E - 1 = 4.37 ± 0.22 %" ("core rms" for the pseudo-Huber objective with pile-up)."""
    from diffcalo.metrics import format_measurement

    r = math.sqrt(max(value, 0.0))
    return (f"{'core rms' if core else 'rms'} E_rec/E - 1 = "
            f"{format_measurement(100 * r, 100 * sem / (2 * r) if r > 0 else math.inf)} %")


def write_continuous_report(run_dir) -> pathlib.Path:
    """report.md and path.png of a continuous study: the objective (with its standard error) at each
    iteration's centre, and the path on the (absorber, active) plane with the depth limit and bounds."""
    import matplotlib.pyplot as plt

    from diffcalo.io import write_text_atomic
    from diffcalo.metrics import format_measurement
    from diffcalo.plotting import _save
    from diffcalo.study.runner import load_journal

    run_dir = pathlib.Path(run_dir)
    with load_journal(run_dir) as j:
        s = continuous_summary(j)
    cfg, path = s["config"], s["path"]
    prob = stack_of(cfg)
    what = ("L-GSO (a " + {"flow": "flow-matching", "gan": "Cramér-GAN"}[cfg.lgso_model] + " surrogate)"
            if cfg.optimizer == "lgso" else "gradient descent through the relaxed simulator")
    extra = [n for n in prob.parameters if n not in ("absorber_mm", "active_mm")]
    label = {"cell_mm": "cell (mm)", "window_sigmas": "time window (sigma_t)"}
    also = "".join({"cell_mm": ", and the cell size", "window_sigmas": ", and the time window's half-width"}[n]
                   for n in extra)
    loss = ("objective E (E_rec / E - 1)^2 (resolution squared plus bias squared)" if prob.huber_delta is None else
            f"objective the mean pseudo-Huber loss (delta {prob.huber_delta:g}) of E_rec / E - 1 (its square root "
            f"the core resolution), the calibration with a pedestal")
    pile = (f" Pile-up of {cfg.collisions:g} collisions per crossing at ({prob.position_mm[0]:g}, "
            f"{prob.position_mm[1]:g}) mm from the beam." if prob.pileup is not None else "")
    lines = [f"# Continuous study report: {cfg.name}", "",
             f"The absorber and active thickness of every {cfg.stack_technology} layer ({prob.n_layers} layers, depth "
             f"<= {prob.max_depth_mm:g} mm){also}, optimised by {what} for the photon energy resolution of a linear "
             f"calibration of the section energies: {loss} for photons of {cfg.photon_energy[0]:g}-"
             f"{cfg.photon_energy[1]:g} GeV, {cfg.samples_per_point} per simulator call; {s['calls']} calls.{pile}", ""]
    if not path:
        lines.append("No completed iteration yet.")
        return write_text_atomic(run_dir / "report.md", "\n".join(lines) + "\n")
    what_rms = "rms E_rec/E - 1 (%)" if prob.huber_delta is None else "core rms E_rec/E - 1 (%)"
    lines += ["| iteration | absorber (mm) | active (mm) |" + "".join(f" {label[n]} |" for n in extra) +
              f" objective (10^-3) | {what_rms} |" + (" step |" if cfg.optimizer == "lgso" else ""),
              "|---:|---:|---:|" + "---:|" * len(extra) + "---:|---:|" + ("---|" if cfg.optimizer == "lgso" else "")]
    for p in path:
        rms = math.sqrt(max(p["value"], 0.0))
        lines.append(f"| {p['iteration']} | {p['design']['absorber_mm']:.3f} | {p['design']['active_mm']:.3f} | " +
                     "".join(f"{p['design'][n]:.3g} | " for n in extra) +
                     f"{format_measurement(1e3 * p['value'], 1e3 * p['sem'])} | "
                     f"{format_measurement(100 * rms, 100 * p['sem'] / (2 * rms) if rms else math.inf)} |" +
                     (f" {'accepted' if p['accepted'] else 'rejected'} |" if cfg.optimizer == "lgso" else ""))
    first, last = path[0], path[-1]
    diff = first["value"] - last["value"]
    err = math.hypot(first["sem"], last["sem"])
    verdict = (f"better than the start by {format_measurement(1e3 * diff, 1e3 * err)} x 10^-3 ({diff / err:.1f} sigma)"
               if err > 0 and diff > 3 * err else
               f"a tie with the start (difference {format_measurement(1e3 * diff, 1e3 * err)} x 10^-3, below 3 sigma)")
    core = prob.huber_delta is not None
    lines += ["", f"Start: {rms_label(first['value'], first['sem'], core)}. Last centre: absorber "
              f"{last['design']['absorber_mm']:.3f} mm, active {last['design']['active_mm']:.3f} mm" +
              "".join(f", {label[n]} {last['design'][n]:.3g}" for n in extra) +
              f", {rms_label(last['value'], last['sem'], core)}: {verdict}.", "", "![path](path.png)", ""]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    it = [p["iteration"] for p in path]
    a1.errorbar(it, [p["value"] for p in path], yerr=[p["sem"] for p in path], marker="o", ms=3, capsize=2)
    a1.set_xlabel("iteration")
    a1.set_ylabel("objective E (E_rec/E - 1)^2 at the centre")
    pa = np.array([[p["design"]["absorber_mm"], p["design"]["active_mm"]] for p in path])
    a2.plot(pa[:, 0], pa[:, 1], "-o", ms=3)
    a2.plot(*pa[0], "gs", label="start")
    a2.plot(*pa[-1], "r*", ms=10, label="last centre")
    ab = np.linspace(*cfg.absorber_range, 50)
    a2.plot(ab, prob.max_depth_mm / prob.n_layers - ab, "k--", lw=1, label="depth limit")
    a2.set_xlim(*cfg.absorber_range)
    a2.set_ylim(*cfg.active_range)
    a2.set_xlabel("absorber per layer (mm)")
    a2.set_ylabel("active per layer (mm)")
    a2.legend(fontsize=8)
    fig.suptitle(f"{cfg.name}: {cfg.optimizer}, {cfg.stack_technology}")
    _save(fig, run_dir / "path.png")
    return write_text_atomic(run_dir / "report.md", "\n".join(lines) + "\n")

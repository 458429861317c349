"""Training the PINN: full-batch L-BFGS on data, PDE residual, boundary and terminal terms.

An epoch is `steps_per_epoch` iterations of scipy's L-BFGS started from the previous epoch's
weights. Epoch boundaries are the checkpoints: the state there is the weights alone, so a
run resumed from one follows the uninterrupted run exactly (TensorFlow ops are made
deterministic). Loss terms, each a mean of squared residuals in units of LOSS_UNIT:

- price: e^(k/2) (v - v_ref) on points of the domain and of its (|k|, s) box, labels from
  the float64 reference in `shared.black_scholes` (e^(k/2) turns errors of v into errors of V / K)
- pde: s v_s - s^2 (v_kk - v/4), the Black-Scholes PDE in (k, s) scaled to the units of v,
  on fresh collocation points (no labels)
- boundary: v against the reference on the edges |k| = k_max and s = s_max of the box
- terminal: v(k, s -> 0) against the payoff |sinh(k/2)|; the ansatz holds it exactly, the
  term stays to show it
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from scipy.optimize import minimize

from shared.black_scholes import black_scholes
from trainer.pinn.domain import DOMAIN, sample_inputs, to_ks
from trainer.pinn.network import (
    V_KK,
    V_S,
    AnalyticJet,
    NetworkShape,
    V,
    analytic_jet,
    build_correction,
    jet_with_network,
    value_with_network,
)
from trainer.safe_training import (
    Fallbacks,
    FaultInjector,
    InterruptFlag,
    TrainingDiverged,
    TrainingInterrupted,
    load_checkpoint,
    save_checkpoint,
)

LOSS_UNIT = 1e-5  # errors are measured in units of 1e-5 of the strike
TERMINAL_S = 1e-6


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    epochs: int = 12
    steps_per_epoch: int = 250
    data_points: int = 20_000
    collocation_points: int = 4_096
    boundary_points: int = 1_024
    # The PDE term shapes the fit; at weight 1 it slowed the price fit (max error 3.0e-5 K
    # after 12 epochs against 1.6e-5 K at 0.1).
    pde_weight: float = 0.1
    boundary_weight: float = 1.0
    batch_size: int = 0  # rows per gradient evaluation; 0: each term in one piece (halved on OOM)
    min_batch_size: int = 256
    shape: NetworkShape = field(default_factory=NetworkShape)

    @classmethod
    def quick(cls, **overrides: Any) -> TrainConfig:
        """Small and short, for tests and smoke runs: well under a minute."""
        small = cls(
            epochs=3,
            steps_per_epoch=60,
            data_points=4_000,
            collocation_points=512,
            boundary_points=256,
        )
        return replace(small, **overrides)

    def as_meta(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Term:
    """One loss term: per-point residuals of the network on fixed tensors."""

    name: str
    weight: float
    tensors: tuple[tf.Tensor, ...]
    residual: Callable[..., tf.Tensor]


def reference_v(k: np.ndarray, s: np.ndarray) -> np.ndarray:
    """v(k, s) = e^(-k/2) c - sinh(k/2), c the undiscounted call on a unit strike, from shared."""
    c = black_scholes(0.0, np.exp(k), 1.0, 1.0, 0.0, s, 0.0).price
    return np.exp(-0.5 * k) * c - np.sinh(0.5 * k)


def box_points(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Points of the (|k|, s) box, denser at large s where v has most structure."""
    s_low, s_high = DOMAIN.s_range
    return rng.uniform(0.0, DOMAIN.k_max, n), np.sqrt(rng.uniform(s_low**2, s_high**2, n))


def value_residual(correction: keras.Model) -> Callable[..., tf.Tensor]:
    def residual(*tensors: tf.Tensor) -> tf.Tensor:
        *analytic, v = tensors
        v_net = value_with_network(AnalyticJet(*analytic), correction)
        return tf.exp(0.5 * analytic[0][:, 0]) * (v_net - v) / LOSS_UNIT

    return residual


def pde_residual(correction: keras.Model) -> Callable[..., tf.Tensor]:
    def residual(*analytic: tf.Tensor) -> tf.Tensor:
        jet = jet_with_network(AnalyticJet(*analytic), correction)
        s = analytic[1][:, 0]
        return (s * jet[:, V_S] - s * s * (jet[:, V_KK] - 0.25 * jet[:, V])) / LOSS_UNIT

    return residual


def build_terms(config: TrainConfig, correction: keras.Model) -> list[Term]:
    rng = np.random.default_rng(config.seed)
    half = config.data_points // 2
    k_domain, s_domain = to_ks(sample_inputs(rng, half))
    k_box, s_box = box_points(rng, config.data_points - half)
    k_data = np.concatenate([np.abs(k_domain), k_box])
    s_data = np.concatenate([s_domain, s_box])

    k_colloc, s_colloc = box_points(rng, config.collocation_points)
    s_low, s_high = DOMAIN.s_range
    n_edge = config.boundary_points // 2
    k_edge = np.concatenate([np.full(n_edge, DOMAIN.k_max), rng.uniform(0, DOMAIN.k_max, n_edge)])
    s_edge = np.concatenate(
        [np.sqrt(rng.uniform(s_low**2, s_high**2, n_edge)), np.full(n_edge, s_high)]
    )
    k_end = rng.uniform(0.0, DOMAIN.k_max, config.boundary_points)
    s_end = np.full_like(k_end, TERMINAL_S)

    def at(k: np.ndarray, s: np.ndarray, *labels: np.ndarray) -> tuple[tf.Tensor, ...]:
        """The points' AnalyticJet fields (computed once, not in every step), then labels."""
        analytic = analytic_jet(tf.constant(k[:, None]), tf.constant(s[:, None]))
        fields = (analytic.k, analytic.s, analytic.fixed, analytic.network_terms)
        return (*fields, *(tf.constant(label) for label in labels))

    values = value_residual(correction)
    return [
        Term("price", 1.0, at(k_data, s_data, reference_v(k_data, s_data)), values),
        Term("pde", config.pde_weight, at(k_colloc, s_colloc), pde_residual(correction)),
        Term(
            "boundary",
            config.boundary_weight,
            at(k_edge, s_edge, reference_v(k_edge, s_edge)),
            values,
        ),
        Term("terminal", 1.0, at(k_end, s_end, np.abs(np.sinh(0.5 * k_end))), values),
    ]


class Objective:
    """The weighted loss and its gradient as functions of the flat float64 weight vector."""

    def __init__(
        self,
        correction: keras.Model,
        terms: list[Term],
        faults: FaultInjector,
        interrupt: InterruptFlag,
    ) -> None:
        self.variables = correction.trainable_variables
        self.terms = terms
        self.faults = faults
        self.interrupt = interrupt
        self.epoch = 0
        self.batch_size = 0
        self.last_terms: dict[str, float] = {}
        self._steps = {term.name: self._gradient_step(term) for term in terms}

    def _gradient_step(self, term: Term) -> Callable[..., tuple[tf.Tensor, list[tf.Tensor]]]:
        signature = [tf.TensorSpec([None, *t.shape[1:]], tf.float64) for t in term.tensors]

        @tf.function(input_signature=signature)
        def step(*tensors: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
            with tf.GradientTape() as tape:
                residual = term.residual(*tensors)
                total = tf.reduce_sum(residual * residual)
            return total, tape.gradient(total, self.variables)

        return step

    def get_weights(self) -> np.ndarray:
        return np.concatenate([v.numpy().ravel() for v in self.variables])

    def set_weights(self, theta: np.ndarray) -> None:
        start = 0
        for variable in self.variables:
            size = int(np.prod(variable.shape))
            variable.assign(theta[start : start + size].reshape(variable.shape))
            start += size

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        self.interrupt.check()
        self.set_weights(theta)
        loss, gradient, parts = 0.0, np.zeros_like(theta), {}
        for term in self.terms:
            rows = int(term.tensors[0].shape[0])
            chunk = min(self.batch_size, rows)
            term_sum = 0.0
            for start in range(0, rows, chunk):
                self.faults.before_step(self.epoch, min(chunk, rows - start))
                total, grads = self._steps[term.name](
                    *(t[start : start + chunk] for t in term.tensors)
                )
                term_sum += float(total)
                gradient += term.weight / rows * np.concatenate([g.numpy().ravel() for g in grads])
            parts[term.name] = term_sum / rows
            loss += term.weight * parts[term.name]
        if self.faults.poison_loss(self.epoch):
            loss = float("nan")
        if not np.isfinite(loss) or not np.isfinite(gradient).all():
            raise TrainingDiverged(f"loss became {loss} in epoch {self.epoch}")
        self.last_terms = parts
        return loss, gradient


@dataclass
class Checkpoint:
    """The state at an epoch boundary, enough to continue training exactly."""

    epoch: int
    weights: np.ndarray
    history: list[dict[str, float]]
    config: dict[str, Any]

    def save(self, path: Path) -> None:
        meta = {"epoch": self.epoch, "history": self.history, "config": self.config}
        save_checkpoint(path, {"weights": self.weights}, meta)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        arrays, meta = load_checkpoint(path)
        return cls(meta["epoch"], arrays["weights"], meta["history"], meta["config"])


@dataclass
class TrainResult:
    correction: keras.Model
    history: list[dict[str, float]]
    seconds: float
    diverged: str | None = None


def train(
    config: TrainConfig,
    checkpoint_path: Path,
    interrupt: InterruptFlag,
    resume: bool = False,
    progress: Callable[[str], None] = print,
) -> TrainResult:
    """Train from scratch or from the checkpoint; checkpoint after every epoch."""
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    correction = build_correction(config.shape, "float64", config.seed)
    objective = Objective(
        correction, build_terms(config, correction), FaultInjector.from_env(), interrupt
    )
    state = Checkpoint(0, objective.get_weights(), [], json.loads(json.dumps(config.as_meta())))
    if resume and checkpoint_path.exists():
        saved = Checkpoint.load(checkpoint_path)
        # Only the number of epochs may change: resuming can also extend a finished run.
        if {**saved.config, "epochs": config.epochs} != state.config:
            raise ValueError(
                f"{checkpoint_path} was written with another configuration: {saved.config}"
            )
        state = replace(saved, config=state.config)
        progress(f"resuming after epoch {state.epoch} from {checkpoint_path}")
    largest_term = max(int(term.tensors[0].shape[0]) for term in objective.terms)
    fallbacks = Fallbacks(config.batch_size or largest_term, config.min_batch_size)
    started = time.perf_counter()

    def run_epoch(batch_size: int) -> np.ndarray:
        objective.batch_size = batch_size
        result = minimize(
            objective,
            state.weights,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": config.steps_per_epoch, "maxcor": 50, "ftol": 0.0, "gtol": 0.0},
        )
        return result.x

    diverged = None
    for epoch in range(state.epoch + 1, config.epochs + 1):
        objective.epoch = epoch
        try:
            weights = fallbacks.run(run_epoch)
        except TrainingDiverged as error:
            diverged = str(error)
            break
        except TrainingInterrupted:
            state.save(checkpoint_path)
            raise
        objective(weights)  # the loss terms at the epoch's end, for the record
        record = {"epoch": epoch, **objective.last_terms}
        state = Checkpoint(epoch, weights, [*state.history, record], state.config)
        state.save(checkpoint_path)
        terms = "  ".join(f"{name} {value:.3e}" for name, value in objective.last_terms.items())
        progress(
            f"epoch {epoch:3d}/{config.epochs}  {terms}  [{time.perf_counter() - started:.1f} s]"
        )

    if diverged:
        if state.epoch == 0:
            raise TrainingDiverged(f"{diverged}; no epoch finished, so there is no usable model")
        progress(f"{diverged}: stopped, keeping the weights of epoch {state.epoch}")
    objective.set_weights(state.weights)
    return TrainResult(correction, state.history, time.perf_counter() - started, diverged)

"""RoPE scaling: how a model trained on N positions is stretched to factor x N, and the check that it really was.

SmolLM2 was trained on 8,192 positions; past them its perplexity explodes (docs/results/long_context.md). The scalings here change
the rotary frequencies so that longer sequences look, to the model, like ones it has seen:

- ``none``: the model as trained; the window is the original one.
- ``linear``: every frequency divided by ``factor`` (position interpolation). Without fine-tuning this blurs
  nearby positions and hurts even short texts; kept as the classic baseline.
- ``dynamic``: NTK-aware scaling whose base grows with the current sequence length, so short texts are untouched.
- ``yarn``: high frequencies kept, low ones interpolated, with a ramp between, and attention logits sharpened by
  0.1 * ln(factor) + 1 (arXiv 2309.00071). The default: it keeps perplexity low to 4x the window untrained.

As in transformers' ``modeling_rope_utils``, each scaling is one small pure function in a registry with a
parallel registry of validators. transformers has renamed these config fields between versions (``rope_scaling``
in 4.x, ``rope_parameters`` in 5.x) and falls back to plain RoPE when it does not recognise them, so
:func:`verify_rotary` inspects the rotary embedding of the *loaded* model and refuses to run on a mismatch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch


class RopeError(ValueError):
    """The requested RoPE scaling is invalid or was not applied by the loaded model."""


def _rope_none(factor: float, original_max_position: int, rope_theta: float) -> dict[str, Any]:
    """Plain RoPE: the model as trained (``factor`` is ignored)."""
    return {"rope_type": "default", "rope_theta": rope_theta}


def _rope_linear(factor: float, original_max_position: int, rope_theta: float) -> dict[str, Any]:
    """Position interpolation: all frequencies divided by ``factor``."""
    return {"rope_type": "linear", "factor": factor, "rope_theta": rope_theta}


def _rope_dynamic(factor: float, original_max_position: int, rope_theta: float) -> dict[str, Any]:
    """NTK-aware scaling; transformers takes the original window from ``max_position_embeddings`` (see apply_rope)."""
    return {"rope_type": "dynamic", "factor": factor, "rope_theta": rope_theta}


def _rope_yarn(factor: float, original_max_position: int, rope_theta: float) -> dict[str, Any]:
    """YaRN: ramped interpolation plus attention temperature; needs the original window explicitly."""
    return {
        "rope_type": "yarn",
        "factor": factor,
        "original_max_position_embeddings": original_max_position,
        "rope_theta": rope_theta,
    }


# You can add a scaling with one {name: builder} entry here and one in ROPE_VALIDATORS; names are Settings' choices.
ROPE_SCALINGS: dict[str, Callable[[float, int, float], dict[str, Any]]] = {
    "yarn": _rope_yarn,
    "linear": _rope_linear,
    "dynamic": _rope_dynamic,
    "none": _rope_none,
}


def _require(params: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if params.get(k) is None]
    if missing:
        raise RopeError(f"rope_type {params.get('rope_type')!r} is missing {', '.join(missing)}")
    if params["rope_theta"] <= 0:
        raise RopeError(f"rope_theta must be positive, got {params['rope_theta']}")


def _validate_none(params: dict[str, Any]) -> None:
    _require(params, "rope_type", "rope_theta")


def _validate_scaled(params: dict[str, Any]) -> None:
    _require(params, "rope_type", "factor", "rope_theta")
    if params["factor"] < 1.0:
        raise RopeError(f"rope factor must be at least 1.0 (it stretches the window), got {params['factor']}")


def _validate_yarn(params: dict[str, Any]) -> None:
    _validate_scaled(params)
    _require(params, "original_max_position_embeddings")
    if params["original_max_position_embeddings"] <= 0:
        raise RopeError("original_max_position_embeddings must be positive")


ROPE_VALIDATORS: dict[str, Callable[[dict[str, Any]], None]] = {
    "none": _validate_none,
    "linear": _validate_scaled,
    "dynamic": _validate_scaled,
    "yarn": _validate_yarn,
}


def effective_window(scaling: str, factor: float, original_max_position: int) -> int:
    """The context window a scaling gives, in tokens: what prompts are budgeted against.

    Example:
        >>> effective_window("yarn", 4.0, 8192)
        32768
    """
    _check_name(scaling)
    return original_max_position if scaling == "none" else int(original_max_position * factor)


def attention_factor(scaling: str, factor: float) -> float:
    """The factor the rotary embedding multiplies cos/sin by: YaRN's 0.1 * ln(factor) + 1, else 1."""
    return 0.1 * math.log(factor) + 1.0 if scaling == "yarn" and factor > 1.0 else 1.0


def default_inv_freq(rope_theta: float, head_dim: int) -> torch.Tensor:
    """Plain RoPE inverse frequencies, theta^(-2i/d): the reference each scaling is checked against."""
    import torch  # here, not at the top: `user_errors()` imports RopeError on every CLI error (cold start)

    return 1.0 / (rope_theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


@dataclass(frozen=True)
class RopeSpec:
    """A chosen scaling, resolved against the model: its transformers parameters and its window."""

    scaling: str
    factor: float
    original_max_position: int
    rope_theta: float
    parameters: dict[str, Any]
    context_window: int

    def public(self) -> dict[str, Any] | None:
        """The answer JSON's ``model.rope_scaling`` (None for plain RoPE)."""
        if self.scaling == "none":
            return None
        return {"rope_type": self.parameters["rope_type"], "factor": self.factor,
                "original_max_position_embeddings": self.original_max_position}


def build_rope(scaling: str, factor: float, original_max_position: int, rope_theta: float) -> RopeSpec:
    """Look up, build and validate a scaling.

    Example:
        >>> build_rope("yarn", 4.0, 8192, 100000.0).parameters["rope_type"]
        'yarn'
    """
    _check_name(scaling)
    params = ROPE_SCALINGS[scaling](factor, original_max_position, rope_theta)
    ROPE_VALIDATORS[scaling](params)
    return RopeSpec(scaling, factor, original_max_position, rope_theta, params,
                    effective_window(scaling, factor, original_max_position))


def model_rope_defaults(config: Any) -> tuple[int, float]:
    """(max_position_embeddings, rope_theta) of an unscaled config, in either transformers layout."""
    params = getattr(config, "rope_parameters", None) or {}
    theta = params.get("rope_theta") or getattr(config, "rope_theta", None)
    if theta is None:
        raise RopeError("the model config has no rope_theta: is this a RoPE model?")
    return int(config.max_position_embeddings), float(theta)


def apply_rope(config: Any, spec: RopeSpec) -> None:
    """Write ``spec`` into a transformers config, for the field names of the installed version.

    ``max_position_embeddings`` becomes the effective window, except for ``dynamic``: transformers' NTK
    scaling treats that field as the *original* window and grows its base past it.
    """
    params = dict(spec.parameters)
    if hasattr(config, "rope_parameters"):  # transformers 5.x: one dict, rope_theta inside
        config.rope_parameters = params
    else:  # transformers 4.x: rope_scaling (None for plain RoPE) and rope_theta beside it
        theta = params.pop("rope_theta")
        config.rope_theta = theta
        config.rope_scaling = None if params["rope_type"] == "default" else params
    config.max_position_embeddings = (
        spec.original_max_position if spec.scaling == "dynamic" else spec.context_window
    )


def verify_rotary(model: Any, expected: RopeSpec) -> None:
    """Check that the loaded model's rotary embedding carries ``expected``; raise RopeError if not.

    Checks the rope type, the attention factor and the inverse frequencies against plain RoPE: equal for
    ``none``, divided by the factor for ``linear``, kept at the high end and divided at the low end for ``yarn``,
    and, for ``dynamic``, shrunk by a probe beyond the original window (then restored).
    """
    import torch  # cold start, as in default_inv_freq

    rotary = _find_rotary(model)
    rope_type = getattr(rotary, "rope_type", None)
    want_type = expected.parameters["rope_type"]
    fallback = (f"transformers did not apply rope scaling {expected.scaling!r}; refusing to run, because past "
                f"{expected.original_max_position} tokens the model would produce garbage.")
    if rope_type != want_type:
        raise RopeError(f"{fallback} The rotary embedding has rope_type={rope_type!r}, expected {want_type!r}.")
    scaling = float(getattr(rotary, "attention_scaling", 1.0))
    want_scaling = attention_factor(expected.scaling, expected.factor)
    if not math.isclose(scaling, want_scaling, rel_tol=1e-4):
        raise RopeError(f"{fallback} attention_scaling={scaling:.4f}, expected {want_scaling:.4f}.")
    inv_freq = rotary.inv_freq.detach().float().cpu()
    base = default_inv_freq(expected.rope_theta, 2 * inv_freq.numel())
    factor = expected.factor
    checks = {
        "none": lambda f: torch.allclose(f, base, rtol=1e-4),
        "linear": lambda f: torch.allclose(f, base / factor, rtol=1e-4),
        "yarn": lambda f: math.isclose(f[0], base[0], rel_tol=1e-4)
        and math.isclose(f[-1], base[-1] / factor, rel_tol=1e-4),
        "dynamic": lambda f: torch.allclose(f, base, rtol=1e-4) and _dynamic_probe_shrinks(rotary, expected),
    }
    if factor > 1.0 and not checks[expected.scaling](inv_freq):
        raise RopeError(f"{fallback} Its inverse frequencies do not match {expected.scaling!r} x{factor}.")


def _dynamic_probe_shrinks(rotary: Any, expected: RopeSpec) -> bool:
    """Run the rotary once at twice the original window: dynamic NTK must lower its frequencies there."""
    import torch  # cold start, as in default_inv_freq

    before = rotary.inv_freq.detach().clone()
    x = torch.zeros(1, dtype=torch.float32, device=before.device)
    with torch.no_grad():
        rotary(x, torch.tensor([[2 * expected.original_max_position - 1]], device=before.device))
        grown = rotary.inv_freq.detach().clone()
        rotary(x, torch.tensor([[0]], device=before.device))  # back to the short-sequence frequencies
    return bool((grown[1:] < before[1:]).all()) and torch.allclose(rotary.inv_freq, before)


def _find_rotary(model: Any) -> Any:
    for module in model.modules():
        if hasattr(module, "inv_freq") and hasattr(module, "rope_type"):
            return module
    raise RopeError(f"{type(model).__name__} has no rotary embedding module to verify")


def _check_name(scaling: str) -> None:
    if scaling not in ROPE_SCALINGS:
        raise RopeError(f"rope scaling {scaling!r} is not one of {', '.join(ROPE_SCALINGS)}")

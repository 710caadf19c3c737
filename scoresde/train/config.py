"""Training configuration: nested dataclasses that round-trip through JSON.

A `TrainConfig` fixes everything that determines the trained weights (data, SDE,
network, loss, optimizer, batch size, seed, dtype). The run-time fields in
`RUNTIME_FIELDS` (how long to train, how often to log/checkpoint, the device) may
change when a run is resumed; any other difference is refused (`config_diff`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from solvers.inputs import as_integer, check_seed

from ..losses import LossConfig
from ..models import ModelConfig
from ..sde import CONFIG_RTOL, SCHEDULE_PROBE_KEY, SDES, configs_match, get_sde
from ..sde_config import custom_sde_config
from .optim_config import LRAnchor, OptimConfig, effective_warmup, lr_factor, resume_anchor

__all__ = ["SDEConfig", "OptimConfig", "TrainConfig", "RUNTIME_FIELDS", "config_diff", "lr_factor",
           "LRAnchor", "effective_warmup", "resume_anchor", "CUSTOM_SDE", "trained_t_min"]

RUNTIME_FIELDS: tuple[str, ...] = ("steps", "log_every", "ckpt_every", "eval_every", "device")
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


CUSTOM_SDE = "custom"
_SDE_METHODS = ("drift", "diffusion", "marginal_coeffs", "prior_sample")
_REBUILDABLE: dict[str, tuple[str, ...]] = {"scoresde.schedules.EDMSDE": ("sigma_min", "sigma_max")}
"""The package's own SDE classes outside `scoresde.sde.SDES` that a stored config rebuilds:
their class path and the constructor arguments their ``config()`` records."""


def _rebuild_known(params: dict[str, Any]) -> Any | None:
    """The package's own SDE described by a custom config (`_REBUILDABLE`), else ``None``."""
    keys = _REBUILDABLE.get(str(params.get("class")))
    config = params.get("config")
    if keys is None or not isinstance(config, dict) or any(k not in config for k in keys):
        return None
    from .. import schedules

    sde = getattr(schedules, str(params["class"]).rsplit(".", 1)[1])(**{k: float(config[k]) for k in keys})
    same_ends = all(math.isclose(float(params[k]), float(getattr(sde, k)), rel_tol=CONFIG_RTOL)
                    for k in ("T", "eps") if k in params)
    return sde if same_ends else None


def _flat(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with a custom SDE's nested ``config`` entries lifted to the top level."""
    out = {k: v for k, v in params.items() if k != "config"}
    nested = params.get("config")
    if isinstance(nested, dict):
        out.update(nested)
    return out


def _differences(stored: dict[str, Any], given: dict[str, Any]) -> str:
    """``"; they differ in sigma_max (80 stored, 40 given), ..."`` for a refused SDE ('' if none
    can be named): scalar entries first, the schedule probe (`SCHEDULE_PROBE_KEY`) by name only."""
    a, b = _flat(stored), _flat(given)
    named = []
    for k in sorted(set(a) & set(b)):
        va, vb = a[k], b[k]
        if k == SCHEDULE_PROBE_KEY:
            continue
        same = (math.isclose(float(va), float(vb), rel_tol=CONFIG_RTOL)
                if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else va == vb)
        if not same:
            named.append(f"{k} ({va!r} stored, {vb!r} given)")
    if not named and a.get(SCHEDULE_PROBE_KEY) != b.get(SCHEDULE_PROBE_KEY):
        named.append(f"the schedule ({SCHEDULE_PROBE_KEY}, its half log-SNR at nine times)")
    return f"; they differ in {', '.join(named)}" if named else ""


@dataclass
class SDEConfig:
    """An SDE by name (``vp``, ``subvp``, ``ve``, ``cosine``) and constructor arguments, or a
    custom SDE object (``name="custom"``; `scoresde.EDMSDE` is stored so and rebuilt from its
    ``sigma_min``, ``sigma_max``).

    A custom SDE is any object with ``T``, ``eps``, ``drift``, ``diffusion``,
    ``marginal_coeffs`` and ``prior_sample`` (the ``solvers.DiffusionSDE`` protocol). Its
    config records the class (``params["class"]``) and, if it has one, its ``config()``; the
    object itself is not saved, so loading such a run needs it again
    (``load_model(path, sde=my_sde)``).
    """

    name: str = "vp"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name.lower() not in SDES and self.name.lower() != CUSTOM_SDE:
            raise ValueError(f"unknown SDE {self.name!r}; valid names: {', '.join(sorted(SDES))} "
                             "(or pass an SDE object in Python)")
        self.name = self.name.lower()
        if self.name != CUSTOM_SDE:  # a misspelt parameter: refused here, with the valid names
            import inspect

            accepted = [p for p in inspect.signature(SDES[self.name]).parameters if p not in ("self",)]
            unknown = sorted(k for k in self.params if k not in accepted)
            if unknown:
                raise ValueError(f"SDE {self.name!r} got unknown parameter(s) {unknown}; it accepts: {accepted}")

    def build(self) -> Any:
        """The SDE: a registered one built from ``params``, the custom object attached, or the
        package's own `scoresde.EDMSDE` rebuilt from its stored config."""
        if self.name != CUSTOM_SDE:
            return get_sde(self.name, **self.params)
        obj = getattr(self, "_instance", None)
        if obj is None:
            obj = _rebuild_known(self.params)
        if obj is None:
            raise ValueError(
                f"this run used a custom SDE ({self.params.get('class', '?')}, config "
                f"{self.params.get('config')}) that a config file cannot rebuild; pass the same "
                "object again, e.g. load_model(path, sde=my_sde)"
            )
        return obj

    def with_instance(self, sde: Any) -> SDEConfig:
        """This config bound to the SDE object ``sde`` (for loading a run); refuses another SDE.

        Raises:
            ValueError: ``sde`` is not the SDE this config describes (other class or parameters;
                for a custom SDE, its ``T``, ``eps`` and ``config()``, floats within relative
                `scoresde.sde.CONFIG_RTOL`, keys the stored config lacks ignored only if they
                are new ones such as `scoresde.sde.SCHEDULE_PROBE_KEY`).
        """
        given = SDEConfig.from_sde(sde)
        if self.name == CUSTOM_SDE:
            stored, now = self.params.get("config"), given.params.get("config")
            ok = given.name == CUSTOM_SDE and given.params.get("class") == self.params.get("class")
            # Floats within CONFIG_RTOL; a schedule probe that an older run did not store is not compared.
            ok = ok and (stored is None or (isinstance(stored, dict) and isinstance(now, dict)
                                            and configs_match(stored, now)))
            # The probe is taken at fractions of [eps, T]: a time-rescaled schedule matches it, so
            # the ends themselves are compared (where the run stored them).
            ok = ok and all(math.isclose(float(self.params[k]), float(given.params[k]), rel_tol=CONFIG_RTOL)
                            for k in ("T", "eps") if k in self.params)
        else:
            # Against the stored SDE with its defaults filled in: a run stored as ``ve {}`` was
            # trained with sigma_max = 50, and VESDE(sigma_max=40) is another SDE.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its construction warnings were shown at training
                stored = dict(get_sde(self.name, **self.params).config())
            ok = given.name == self.name and all(
                math.isclose(float(given.params[k]), float(v)) for k, v in stored.items()
                if k in given.params and isinstance(v, (int, float)))
        if not ok:
            mine, theirs = self.class_name(), given.class_name()
            if mine != theirs:
                why = f"; they are different SDE classes ({mine} stored, {theirs} given)"
            else:
                why = _differences(stored if self.name != CUSTOM_SDE else self.params, given.params)
            raise ValueError(f"the run was trained with the SDE {self.name} {self.params}, "
                             f"but the SDE given is {given.name} {given.params}{why}")
        return given

    def class_name(self) -> str:
        """The SDE's class name: ``VPSDE`` for ``vp``, the stored class's for a custom SDE."""
        if self.name != CUSTOM_SDE:
            return SDES[self.name].__name__
        return str(self.params.get("class", "custom")).rsplit(".", 1)[-1]

    @classmethod
    def from_sde(cls, sde: Any) -> SDEConfig:
        """The config of an SDE object: by name for the registered classes, else ``custom``.

        Raises:
            TypeError: ``sde`` lacks a method or attribute of the SDE protocol.
        """
        if isinstance(sde, type):
            raise TypeError(f"got the class {sde.__name__}, not an SDE: pass an instance, e.g. {sde.__name__}()")
        for name, c in SDES.items():
            if type(sde) is c:
                return cls(name=name, params=dict(sde.config()))
        missing = [m for m in (*_SDE_METHODS, "T", "eps") if not hasattr(sde, m)]
        if missing:
            raise TypeError(
                f"{type(sde).__name__} is not an SDE: it lacks {missing} (needed: T, eps, "
                f"{', '.join(_SDE_METHODS)}; see solvers.DiffusionSDE)"
            )
        params_conf = custom_sde_config(sde)
        klass = f"{type(sde).__module__}.{type(sde).__qualname__}"
        out = cls(name=CUSTOM_SDE, params={"class": klass, "config": params_conf,
                                           "T": float(sde.T), "eps": float(sde.eps)})
        out._instance = sde  # not a dataclass field: never serialised
        return out


@dataclass
class TrainConfig:
    """One training run.

    ``data`` is a built-in name (a 2-D toy, an exact target preset, ``"digits"``), a data file
    or image folder (see `scoresde.data.load_data`), or a label for data passed in Python.
    ``data_id`` is the identity of the data actually trained on (`scoresde.data.data_identity`:
    a content hash for arrays), filled in by the trainer; a checkpoint is only ever compared
    with data of the same identity.
    """

    data: str = "eight_gaussians"
    sde: SDEConfig = field(default_factory=SDEConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 5000
    batch_size: int = 512
    seed: int = 0
    dtype: str = "float32"
    device: str = "auto"
    log_every: int = 100
    ckpt_every: int = 1000
    eval_every: int = 0
    data_id: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.data, os.PathLike):
            self.data = os.fspath(self.data)
        if not isinstance(self.data, str):
            raise TypeError(
                f"TrainConfig.data is the data's name or file/folder path (a str), got "
                f"{type(self.data).__name__}; pass a data object or array as Trainer(config, data=obj) "
                "(or toy_config('label', data=obj)) with a label here"
            )
        groups = {"sde": SDEConfig, "model": ModelConfig, "loss": LossConfig, "optim": OptimConfig}
        for name, klass in groups.items():
            if not isinstance(getattr(self, name), klass):
                raise TypeError(f"TrainConfig.{name} must be a {klass.__name__} (in a JSON config: an object "
                                f"of its fields), got {type(getattr(self, name)).__name__} {getattr(self, name)!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        self.steps = as_integer(self.steps, "steps", minimum=0)
        self.batch_size = as_integer(self.batch_size, "batch_size", minimum=1)
        for name in ("log_every", "ckpt_every", "eval_every"):
            setattr(self, name, as_integer(getattr(self, name), f"{name} (0 disables)", minimum=0))
        checked = check_seed(self.seed)
        self.seed = 0 if checked is None else checked
        if (self.loss.weighting == "edm" and self.model.output == "edm"
                and not math.isclose(float(self.loss.sigma_data), float(self.model.sigma_data), rel_tol=1e-12)):
            raise ValueError(
                f"loss sigma_data = {self.loss.sigma_data:g} differs from the model's {self.model.sigma_data:g}: "
                "with output='edm' and weighting='edm' the weight is EDM's unit weight on the network's "
                "target only when both are the data's std; set LossConfig(sigma_data=...) to the model's")
        t_min = self.loss.t_min
        if t_min is not None and self.sde.name != CUSTOM_SDE:
            horizon = float(self.sde.build().T)
            if not 0.0 < t_min < horizon:
                raise ValueError(f"loss t_min must lie in (0, T={horizon:g}), got {t_min}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        """The config as JSON text; also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            from ..atomic import atomic_write_bytes

            atomic_write_bytes(path, (text + "\n").encode())
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """A config from a dict of its fields (nested groups as dicts of theirs).

        Raises:
            TypeError: ``d`` or a group is not a dict, or a group has an unknown field (named
                with its path, e.g. ``loss.foo``).
            ValueError: an unknown top-level field or a bad value.
        """
        if not isinstance(d, dict):
            raise TypeError(f"a TrainConfig is a JSON object / dict of fields, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid: {sorted(known)}")
        d = dict(d)
        nested = {"sde": SDEConfig, "model": ModelConfig, "loss": LossConfig, "optim": OptimConfig}
        for key, klass in nested.items():
            if key not in d:
                continue
            if not isinstance(d[key], dict):
                raise TypeError(f"config field {key!r} must be an object of {klass.__name__} fields "
                                f"({', '.join(f.name for f in fields(klass))}), got {type(d[key]).__name__} {d[key]!r}")
            valid = {f.name for f in fields(klass)}
            bad = sorted(str(k) for k in set(d[key]) - valid)
            if bad:
                raise TypeError(f"unknown config field(s) {', '.join(f'{key}.{b}' for b in bad)}; "
                                f"valid in {key}: {', '.join(sorted(valid))}")
            try:
                d[key] = klass(**d[key])
            except TypeError as err:  # e.g. "lr": null
                raise TypeError(f"bad value type in config group {key!r}: {err}") from None
        try:
            return cls(**d)
        except TypeError as err:  # e.g. "'<' not supported between 'str' and 'int'"
            raise TypeError(f"bad value type in the config: {err}") from None

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> TrainConfig:
        """Parse JSON text, or read it from a file path (errors name the file)."""
        text = str(text_or_path)
        source = "config text"
        if not text.lstrip().startswith(("{", "[")):
            source = f"config file {text}"
            try:
                text = Path(text_or_path).read_text()
            except UnicodeDecodeError:
                raise ValueError(f"{source} is not a JSON text file (a binary file?)") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source} is not valid JSON: {err}") from None
        return cls.from_dict(data)


def trained_t_min(config: TrainConfig, sde: Any) -> float:
    """The earliest time a run's network is trained at: the loss's ``t_min``, else ``sde.eps``."""
    t_min = config.loss.t_min
    return float(sde.eps) if t_min is None else float(t_min)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.loads(json.dumps(v))  # normalise tuples/lists
    return out


def config_diff(saved: TrainConfig, current: TrainConfig) -> list[str]:
    """Differences that forbid resuming (run-time fields ignored), as ``"key: a != b"`` lines."""
    sd, cd = saved.to_dict(), current.to_dict()
    if sd.get("data_id") is None or cd.get("data_id") is None:  # an older run: no identity stored
        sd.pop("data_id", None)
        cd.pop("data_id", None)
    a, b = _flatten(sd), _flatten(cd)
    keys = sorted((set(a) | set(b)) - set(RUNTIME_FIELDS))
    if same_data(sd.get("data_id"), cd.get("data_id")):
        # the same data under another name (a folder's resized images saved as a file): only the
        # label differs, and a label does not change what the run trains on
        keys = [k for k in keys if k not in ("data", "data_id.source")]
    return [f"{k}: checkpoint {a.get(k)!r} != current {b.get(k)!r}" for k in keys if not _same_entry(k, a, b)]


def same_data(a: Any, b: Any) -> bool:
    """Whether two data identities (``config.data_id``) describe the same array: equal SHA-256,
    shape and dtype (the name they were loaded under may differ)."""
    if not (isinstance(a, dict) and isinstance(b, dict)) or not a.get("sha256"):
        return False
    return all(a.get(k) == b.get(k) for k in ("sha256", "shape", "dtype"))


def _same_entry(key: str, saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether flattened entry ``key`` agrees; a schedule probe (`scoresde.sde.SCHEDULE_PROBE_KEY`)
    is compared within `scoresde.sde_config.PROBE_TOL` and not at all when an older checkpoint lacks it."""
    if key.rsplit(".", 1)[-1] != SCHEDULE_PROBE_KEY:
        return saved.get(key) == current.get(key)
    if key not in saved:
        return True
    return key in current and configs_match({key: saved[key]}, {key: current[key]}, rtol=CONFIG_RTOL)

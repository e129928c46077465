"""Device meshes and parameter sharding rules: data, FSDP and tensor parallelism from one table.

    mesh = parse_mesh("data:4,model:2")            # 8 devices
    state = shard(state, mesh)                     # params + optimizer state by LLAMA_RULES
    batch = shard_batch(batch, mesh)               # batch axis over ("data", "fsdp")

Axes: ``data`` (batch split, parameters replicated), ``fsdp`` (batch split *and* parameters split
along their d_model dimension, gathered per layer by the compiler), ``model`` (tensor parallel,
Megatron style: Q/K/V, gate and up column-parallel, O and down row-parallel, vocabulary-parallel
embedding). A rule names mesh axes per array dimension; axes missing from the mesh, of size 1, or
not dividing the dimension are dropped (that dimension is then replicated), so one table serves every
mesh shape and the code runs unchanged on 1 device, a CPU with fake devices, or a TPU pod slice.

Axis types: meshes are built with ``AxisType.Auto`` (classic GSPMD). The model code carries no
sharding annotations; the compiler propagates the parameter and batch shardings given to ``jax.jit``.
Explicit axes would make every ambiguous op name its output sharding, which buys nothing here.
"""

from __future__ import annotations

import math
import re

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")

# (regex on the parameter path "a/b/c", one entry per array dimension). First match wins; paths of
# optimizer moments end with the parameter path, so the same rules shard them.
LLAMA_RULES: tuple[tuple[str, tuple], ...] = (
    (r"(^|/)embed$", ("model", "fsdp")),  # (V, D) vocabulary-parallel
    (r"(^|/)lm_head$", ("fsdp", "model")),  # (D, V)
    (r"(^|/)blocks/wqkv$", (None, "fsdp", "model", None, None)),  # (L, D, K, H/K+2, hd) column-parallel by KV head
    (r"(^|/)blocks/w_gate_up$", (None, "fsdp", None, "model")),  # (L, D, 2, F) column-parallel
    (r"(^|/)blocks/(wo|w_down)$", (None, "model", "fsdp")),  # (L, in, D) row-parallel
    # the per-layer layout (scan_layers=False): the same specs without the layer axis
    (r"(^|/)blocks/layers/wqkv$", ("fsdp", "model", None, None)),
    (r"(^|/)blocks/layers/w_gate_up$", ("fsdp", None, "model")),
    (r"(^|/)blocks/layers/(wo|w_down)$", ("model", "fsdp")),
)


def parse_mesh(spec: str, devices=None) -> Mesh:
    """A mesh from ``"name:size,name:size"`` (names from ``AXES``; one size may be ``-1`` = the rest).

    The product of the sizes must equal the number of devices (default: all of ``jax.devices()``).
    """
    devices = list(jax.devices() if devices is None else devices)
    names, sizes = [], []
    for part in (s.strip() for s in spec.split(",") if s.strip()):
        name, sep, size = part.partition(":")
        if not sep or name not in AXES or name in names:
            raise ValueError(f"mesh: expected 'axis:size,...' with distinct axes from {AXES}, got {spec!r}")
        try:
            n = int(size)
        except ValueError:
            raise ValueError(f"mesh: size of {name!r} must be an integer, got {size!r}") from None
        if n < 1 and n != -1:
            raise ValueError(f"mesh: size of {name!r} must be >= 1 or -1, got {n}")
        names.append(name)
        sizes.append(n)
    if not names:
        raise ValueError(f"mesh: empty mesh spec {spec!r}")
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh: at most one axis may have size -1, got {spec!r}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"mesh: {len(devices)} devices are not divisible by {known} ({spec!r})")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(f"mesh: {spec!r} needs {math.prod(sizes)} devices, {len(devices)} available")
    return jax.make_mesh(tuple(sizes), tuple(names), axis_types=(AxisType.Auto,) * len(names), devices=devices)


def path_str(path) -> str:
    """'blocks/wq' for a pytree key path (NNX ``.value`` attributes and sequence indices dropped)."""
    parts = []
    for k in path:
        name = getattr(k, "key", getattr(k, "name", getattr(k, "idx", None)))
        if name == "value" or isinstance(name, int):
            continue
        parts.append(str(name))
    return "/".join(parts)


def spec_for(path: str, shape: tuple[int, ...], mesh: Mesh, rules=LLAMA_RULES) -> P:
    """The PartitionSpec of one array: the first matching rule, pruned to what ``mesh`` can split."""
    for pattern, axes in rules:
        if re.search(pattern, path) and len(axes) == len(shape):
            out = []
            for dim, ax in zip(shape, axes):
                size = mesh.shape.get(ax, 1) if ax else 1
                out.append(ax if size > 1 and dim % size == 0 else None)
            return P(*out)
    return P()


def shardings(tree, mesh: Mesh, rules=LLAMA_RULES):
    """NamedShardings for every leaf of a params / optimizer-state / train-state pytree."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: NamedSharding(mesh, spec_for(path_str(path), tuple(getattr(x, "shape", ())), mesh, rules)),
        tree)


def shard(tree, mesh: Mesh, rules=LLAMA_RULES):
    """Place a pytree on ``mesh`` by ``rules`` (replicated where no rule applies)."""
    return jax.device_put(tree, shardings(tree, mesh, rules))


def batch_spec(mesh: Mesh, ndim: int = 2, batch_dim: int = 0) -> P:
    """PartitionSpec splitting dimension ``batch_dim`` over the mesh's data-parallel axes."""
    axes = tuple(a for a in BATCH_AXES if mesh.shape.get(a, 1) > 1)
    spec = [None] * ndim
    spec[batch_dim] = axes if axes else None
    return P(*spec)


def shard_batch(batch, mesh: Mesh, batch_dim: int = 0):
    """Place a pytree of host arrays on ``mesh``, split along ``batch_dim``.

    Every process passes the same global batch (multi-host: each device takes its own slice).
    """
    def put(x):
        sh = NamedSharding(mesh, batch_spec(mesh, x.ndim, batch_dim))
        return jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx])

    return jax.tree.map(put, batch)

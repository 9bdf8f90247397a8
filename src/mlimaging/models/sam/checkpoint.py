r"""Load SAM checkpoint files (official ViT-B/L/H, MedSAM, or our own) into :class:`SAM`.

A SAM checkpoint is a state dict with the keys ``image_encoder.*``, ``prompt_encoder.*``
and ``mask_decoder.*``. Every size of the network can be read off the shapes in it:

- ``image_encoder.patch_embed.proj.weight`` :math:`(D, 3, p, p)`: encoder width :math:`D`
  and patch size :math:`p`; ``image_encoder.pos_embed`` :math:`(1, g, g, D)`: the input
  size :math:`S = g p`;
- the number of ``image_encoder.blocks.N``: the depth; each block's
  ``attn.rel_pos_h`` :math:`(2n - 1, D / h)`: the head width (so the :math:`h` heads) and
  the side :math:`n` it attends over: :math:`n = g` for a global block, the window size
  otherwise; ``mlp.lin1.weight`` :math:`(rD, D)`: the MLP ratio :math:`r`;
- ``prompt_encoder.no_mask_embed.weight`` :math:`(1, C)`: the prompt width :math:`C`;
  ``mask_downscaling.3.weight``: the mask branch width;
- ``mask_decoder.transformer.layers.N``: the decoder depth, its ``mlp.lin1``: the MLP
  width, a cross attention's ``q_proj`` :math:`(C / r_a, C)`: the downsample rate
  :math:`r_a`; ``mask_tokens`` :math:`(K + 1, C)`: the multimask outputs :math:`K`;
  ``iou_prediction_head.layers.N``: the IoU head.

Only the decoder's number of heads leaves no trace in the shapes; it is 8 in every
published SAM (``decoder_heads=8``).

Files are read with ``torch.load(weights_only=True)`` (no arbitrary unpickling); a
training checkpoint that wraps the state dict under ``"model"`` or ``"state_dict"`` (as
:func:`mlimaging.training.fit` writes) is unwrapped, and a ``"module."`` prefix (DDP) is
removed.

References
----------
Kirillov A. et al. (2023). Segment Anything. ICCV. arXiv:2304.02643.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mlimaging.models.sam.config import SAM_CONFIGS, SAMConfig
from mlimaging.models.sam.model import SAM
from mlimaging.training.checkpoint import load_failure_reason

__all__ = ["infer_sam_config", "load_sam_checkpoint", "sam_state_dict", "variant_of"]

_PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
_PATCH = "image_encoder.patch_embed.proj.weight"
_LIST_AT_MOST = 4


def variant_of(config: SAMConfig) -> str | None:
    """The name in ``SAM_CONFIGS`` whose sizes equal ``config`` (None if there is none).

    Examples
    --------
    >>> variant_of(SAM_CONFIGS["vit_l"])
    'vit_l'
    >>> variant_of(SAMConfig(encoder_depth=6, global_attn_indexes=(5,))) is None
    True
    """
    for name, known in SAM_CONFIGS.items():
        if known == config:
            return name
    return None


def _is_sam(obj: Any) -> bool:
    return isinstance(obj, Mapping) and any(isinstance(k, str) and k.startswith(_PARTS) for k in obj)


def _strip_module(obj: Mapping) -> Mapping:
    if obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
        return {k[len("module."):]: v for k, v in obj.items()}
    return obj


def sam_state_dict(obj: Any, *, source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    r"""The SAM state dict in ``obj``: itself, or unwrapped from ``"model"`` / ``"state_dict"``.

    Parameters
    ----------
    obj : Any
        What ``torch.load`` returned.
    source : str
        Names the file in error messages.

    Raises
    ------
    ValueError
        If ``obj`` holds no SAM state dict (a non-dict, or no ``image_encoder.*`` /
        ``prompt_encoder.*`` / ``mask_decoder.*`` keys), or a value is not a tensor.

    Examples
    --------
    >>> import torch
    >>> sam_state_dict({"model": {"module.mask_decoder.iou_token.weight": torch.zeros(1, 4)}, "epoch": 3})
    {'mask_decoder.iou_token.weight': tensor([[0., 0., 0., 0.]])}
    >>> try:
    ...     sam_state_dict({"fc.weight": torch.zeros(1)}, source="net.pt")
    ... except ValueError as err:
    ...     print(str(err).replace(": ", ":\n"))
    net.pt is not a SAM checkpoint:
    no image_encoder.*, prompt_encoder.* or mask_decoder.* keys (found fc.weight)
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source} is not a SAM checkpoint: it holds a {type(obj).__name__}, "
                         "expected a state dict (a dict of tensors)")
    state = _strip_module(obj)
    if not _is_sam(state):
        for wrapper in ("model", "state_dict", "model_state_dict"):
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping) and _is_sam(_strip_module(inner)):
                state = _strip_module(inner)
                break
        else:
            found = ", ".join(map(str, list(obj)[:_LIST_AT_MOST])) + (", ..." if len(obj) > _LIST_AT_MOST else "")
            raise ValueError(f"{source} is not a SAM checkpoint: no image_encoder.*, prompt_encoder.* or "
                             f"mask_decoder.* keys (found {found or 'no keys'})")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{source} is not a SAM checkpoint: {bad[0]!r} holds a {type(state[bad[0]]).__name__}, "
                         "expected a tensor")
    return dict(state)


def _shape(state: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"not a SAM checkpoint: missing key {key}")
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise ValueError(f"not a SAM checkpoint: {key} has shape {shape}, expected {ndim} dimensions")
    return shape


def _count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    if found != set(range(len(found))):
        raise ValueError(f"not a SAM checkpoint: {prefix}N must be numbered 0..{len(found) - 1}, got {sorted(found)}")
    return len(found)


def infer_sam_config(state_dict: Mapping[str, torch.Tensor], *, decoder_heads: int = 8) -> SAMConfig:
    """The :class:`SAMConfig` whose network has the shapes of ``state_dict``.

    Parameters
    ----------
    state_dict : mapping of str to Tensor
        A SAM state dict (official key names).
    decoder_heads : int
        Heads of the decoder's attentions, which shapes do not reveal (8 in every
        published SAM).

    Returns
    -------
    SAMConfig
        With the default pixel statistics.

    Raises
    ------
    ValueError
        If a key needed to read a size is missing or has an impossible shape (the message
        names it).

    Examples
    --------
    >>> import torch
    >>> from mlimaging.models.sam import SAM, SAM_CONFIGS
    >>> with torch.device("meta"):  # shapes only, no memory
    ...     state = SAM("vit_h").state_dict()
    >>> infer_sam_config(state) == SAM_CONFIGS["vit_h"]
    True
    """
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}")
    sd = state_dict
    dim, channels, patch, patch_w = _shape(sd, _PATCH, 4)
    if channels != 3 or patch != patch_w:
        raise ValueError(f"not a SAM checkpoint: {_PATCH} has shape {(dim, channels, patch, patch_w)}, "
                         "expected (D, 3, p, p)")
    _, grid, grid_w, pos_dim = _shape(sd, "image_encoder.pos_embed", 4)
    if grid != grid_w or pos_dim != dim:
        raise ValueError(f"not a SAM checkpoint: image_encoder.pos_embed has shape {(1, grid, grid_w, pos_dim)}, "
                         f"expected (1, g, g, {dim})")
    depth = _count(sd, "image_encoder.blocks.")
    if depth == 0:
        raise ValueError("not a SAM checkpoint: missing key image_encoder.blocks.0.*")
    head_dims, windows, global_blocks = set(), set(), []
    for i in range(depth):
        key = f"image_encoder.blocks.{i}.attn.rel_pos_h"
        rows, head_dim = _shape(sd, key, 2)
        if rows % 2 == 0:
            raise ValueError(f"not a SAM checkpoint: {key} has {rows} rows, expected 2 n - 1")
        head_dims.add(head_dim)
        side = (rows + 1) // 2
        if side == grid:
            global_blocks.append(i)
        else:
            windows.add(side)
    if len(head_dims) != 1 or dim % head_dim:
        raise ValueError(f"not a SAM checkpoint: the rel_pos tables have head widths {sorted(head_dims)}, "
                         f"expected one width dividing {dim}")
    if len(windows) > 1:
        raise ValueError(f"not a SAM checkpoint: windowed blocks attend over different sides {sorted(windows)}")
    mlp_dim = _shape(sd, "image_encoder.blocks.0.mlp.lin1.weight", 2)[0]
    ratio = mlp_dim / dim
    if int(dim * ratio) != mlp_dim:
        ratio = math.nextafter(ratio, math.inf)
    prompt_dim = _shape(sd, "prompt_encoder.no_mask_embed.weight", 2)[1]
    mask_in_chans = _shape(sd, "prompt_encoder.mask_downscaling.3.weight", 4)[0]
    decoder_depth = _count(sd, "mask_decoder.transformer.layers.")
    if decoder_depth == 0:
        raise ValueError("not a SAM checkpoint: missing key mask_decoder.transformer.layers.0.*")
    decoder_mlp = _shape(sd, "mask_decoder.transformer.layers.0.mlp.lin1.weight", 2)[0]
    inner = _shape(sd, "mask_decoder.transformer.final_attn_token_to_image.q_proj.weight", 2)[0]
    tokens = _shape(sd, "mask_decoder.mask_tokens.weight", 2)[0]
    iou_depth = _count(sd, "mask_decoder.iou_prediction_head.layers.")
    iou_hidden = (_shape(sd, "mask_decoder.iou_prediction_head.layers.0.weight", 2)[0] if iou_depth > 1 else 256)
    if inner == 0 or prompt_dim % inner:
        raise ValueError(f"not a SAM checkpoint: the decoder's cross attention has width {inner}, "
                         f"expected a divisor of {prompt_dim}")
    try:
        return SAMConfig(
            img_size=grid * patch, patch_size=patch, encoder_dim=dim, encoder_depth=depth,
            encoder_heads=dim // head_dim, global_attn_indexes=tuple(global_blocks),
            window_size=next(iter(windows), 14), mlp_ratio=ratio, prompt_dim=prompt_dim,
            mask_in_chans=mask_in_chans, decoder_depth=decoder_depth, decoder_heads=decoder_heads,
            decoder_mlp_dim=decoder_mlp, attention_downsample_rate=prompt_dim // inner,
            num_multimask_outputs=tokens - 1, iou_head_depth=iou_depth, iou_head_hidden_dim=iou_hidden,
        )
    except ValueError as exc:
        raise ValueError(f"not a SAM checkpoint: the shapes give an impossible configuration: {exc}") from None


def _listed(items: list[str]) -> str:
    more = f" (and {len(items) - _LIST_AT_MOST} more)" if len(items) > _LIST_AT_MOST else ""
    return "; ".join(items[:_LIST_AT_MOST]) + more


def _mismatches(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> list[str]:
    """Missing keys, unexpected keys and shape mismatches, as readable lines (empty: it fits)."""
    problems = []
    shapes = [f"{k}: expected {tuple(v.shape)}, found {tuple(state[k].shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches: {_listed(shapes)}")
    missing = [k for k in expected if k not in state]
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listed(missing)}")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listed(unexpected)}")
    return problems


def load_sam_checkpoint(path: str | os.PathLike, *, variant: str | None = None,
                        decoder_heads: int = 8) -> SAM:
    r"""Build a :class:`SAM` from a checkpoint file, in eval mode on the CPU.

    Parameters
    ----------
    path : str or PathLike
        A file saved with ``torch.save(state_dict)`` (official SAM ``sam_vit_b_01ec64.pth``
        and siblings, MedSAM's ``medsam_vit_b.pth``), or a training checkpoint holding one
        under ``"model"`` / ``"state_dict"``.
    variant : {None, "vit_b", "vit_l", "vit_h", "tiny"}
        None infers the sizes from the shapes (:func:`infer_sam_config`); a name requires
        the file to have exactly that configuration's keys and shapes.
    decoder_heads : int
        Decoder heads when ``variant`` is None (not recorded in the shapes; 8 official).

    Returns
    -------
    SAM
        With the file's weights (float32), ``eval()`` mode.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    ValueError
        If the file cannot be read with ``weights_only=True``, is not a SAM checkpoint, or
        does not match ``variant`` (the message names the expected and found shapes, and the
        missing and unexpected keys).

    Examples
    --------
    >>> import os, tempfile, torch
    >>> from mlimaging.models.sam import SAM
    >>> _ = torch.manual_seed(0)
    >>> sam = SAM("tiny")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "sam.pth")
    ...     torch.save(sam.state_dict(), path)
    ...     loaded = load_sam_checkpoint(path)  # sizes inferred from the shapes
    ...     try:
    ...         load_sam_checkpoint(path, variant="vit_b")
    ...     except ValueError as err:
    ...         message = str(err).split(" is ", 1)[1]
    >>> loaded.config == sam.config
    True
    >>> torch.equal(loaded.mask_decoder.iou_token.weight, sam.mask_decoder.iou_token.weight)
    True
    >>> print(message[:148].replace(": ", ":\n"))
    not a SAM vit_b checkpoint (the file looks like tiny):
    193 shape mismatches:
    image_encoder.pos_embed:
    expected (1, 64, 64, 768), found (1, 8, 8, 64)
    """
    if variant is not None and variant not in SAM_CONFIGS:
        raise ValueError(f"variant must be None or one of {sorted(SAM_CONFIGS)}, got {variant!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, a truncated one, or a pickle of arbitrary objects
        raise ValueError(f"checkpoint {path} could not be read with torch.load(weights_only=True): "
                         f"{load_failure_reason(exc)}") from None
    state = sam_state_dict(obj, source=f"checkpoint {path}")
    if variant is None:
        try:
            config = infer_sam_config(state, decoder_heads=decoder_heads)
        except ValueError as exc:
            raise ValueError(f"checkpoint {path} is {exc}") from None
    else:
        config = SAM_CONFIGS[variant]
    with torch.device("meta"):  # shapes only: the file's tensors are assigned below, no second copy
        model = SAM(config)
    problems = _mismatches(state, model.state_dict())
    if problems:
        found = ""
        if variant is not None:
            try:
                inferred = infer_sam_config(state, decoder_heads=decoder_heads)
            except ValueError:
                pass
            else:
                name = variant_of(inferred)
                found = (f" (the file looks like {name})" if name else
                         f" (the file has img_size={inferred.img_size}, encoder_dim={inferred.encoder_dim}, "
                         f"encoder_depth={inferred.encoder_depth}, prompt_dim={inferred.prompt_dim})")
        what = f"a SAM {variant} checkpoint{found}" if variant else "a SAM checkpoint of the inferred configuration"
        raise ValueError(f"checkpoint {path} is not {what}: " + "; ".join(problems))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.reset_pixel_statistics()
    return model.eval()

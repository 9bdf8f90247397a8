"""The Flower deployment's wire format for model weights: one flat array per message.

Flower 1.42 splits a message into content-addressed objects (the message, its records, every
array and every array chunk) and moves each one with its own HTTP request, both from the sender
to the SuperLink and from the SuperLink to the receiver. A LeNet ``state_dict`` sent as an
``ArrayRecord`` of its 10 tensors makes a message of 23 objects; the same weights as one flat
array make 5. With 4 clients that is about 80 requests a round instead of about 300, at about
5 ms of CPU each (client and server together); measured on the benchmark's 4 x 5 deployment:
SuperLink 5.9 -> 2.8 CPU s, SuperNodes 4.1 -> 2.4 CPU s.

Used by :mod:`mlimaging.privacy.flower`'s ServerApp and ClientApp (both ends are ours); Flower's
SecAgg+ path keeps its own legacy parameter list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__: list[str] = []


def _pack(state: Mapping[str, torch.Tensor]) -> Any:
    r"""A ``state_dict`` as a Flower ``ArrayRecord`` of one flat array (the tensors concatenated in order),
    when they share one dtype; else one array per tensor.

    Flower sends each array of a message as its own objects, one HTTP request each way per object: a LeNet
    ``ArrayRecord`` of 10 tensors makes a message of 23 objects, a flat one of 5, so a round of 4 clients
    needs about 300 requests instead of about 80 (about 5 ms of CPU each, both ends together).
    :func:`_unpack` reverses it, bit for bit.

    Examples
    --------
    >>> from torch import nn
    >>> state = nn.Linear(3, 2).state_dict()
    >>> back = _unpack(_pack(state), state)  # doctest: +SKIP
    >>> all(torch.equal(back[k], v) for k, v in state.items())  # doctest: +SKIP
    True
    """
    from flwr.app import ArrayRecord

    if len({v.dtype for v in state.values()}) != 1:
        return ArrayRecord(dict(state))
    return ArrayRecord({"flat": torch.cat([v.detach().reshape(-1) for v in state.values()])})


def _unpack(record: Any, layout: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of an ``ArrayRecord`` made by :func:`_pack`; ``layout``: a ``state_dict`` of the
    same model (names, shapes, dtypes)."""
    got = record.to_torch_state_dict()
    if set(got) != {"flat"}:
        return got
    flat, out, i = got["flat"], {}, 0
    if flat.numel() != sum(v.numel() for v in layout.values()):
        raise ValueError(f"a flat array of {flat.numel()} values does not fit the model's "
                         f"{sum(v.numel() for v in layout.values())}")
    for k, v in layout.items():
        out[k] = flat[i:i + v.numel()].reshape(v.shape).to(v.dtype).clone()
        i += v.numel()
    return out

"""SAM checkpoint files: the official vit_b key set, shape inference, variant checks, bad files."""

from __future__ import annotations

import dataclasses
from pathlib import PurePosixPath

import pytest
import torch

from mlimaging.models import create_model
from mlimaging.models.sam import (
    SAM,
    SAM_CONFIGS,
    SAMConfig,
    infer_sam_config,
    load_sam_checkpoint,
    variant_of,
)
from mlimaging.models.sam.checkpoint import sam_state_dict


@pytest.fixture(scope="module")
def official_vit_b_state():
    """The state dict of segment-anything's full vit_b (built on the meta device: shapes, no memory)."""
    build_sam = pytest.importorskip("segment_anything.build_sam")
    with torch.device("meta"):
        ref = build_sam.build_sam_vit_b(checkpoint=None)
    return ref.state_dict()


def _shapes_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tensors of the right shapes that all view one zero: a file of any SAM size in a few kB."""
    return {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in state.items()}


@pytest.fixture(scope="module")
def vit_b_file(official_vit_b_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("sam") / "sam_vit_b_shapes.pth"
    torch.save(_shapes_only(official_vit_b_state), path)
    return path


def _tiny_state(seed: int = 0) -> dict[str, torch.Tensor]:
    return create_model("sam_tiny", seed=seed).state_dict()


# ------------------------------------------------------------------------------ the official key set
def test_every_official_vit_b_key_and_shape_loads_strictly(official_vit_b_state):
    state = official_vit_b_state
    assert len(state) == 314
    config = infer_sam_config(state)
    assert config == SAM_CONFIGS["vit_b"] and variant_of(config) == "vit_b"
    with torch.device("meta"):
        ours = SAM("vit_b")
    expected = ours.state_dict()
    assert set(expected) == set(state)
    assert {k: tuple(v.shape) for k, v in expected.items()} == {k: tuple(v.shape) for k, v in state.items()}
    ours.load_state_dict(state, strict=True, assign=True)  # raises on any missing / unexpected key


@pytest.mark.parametrize("name", ["vit_l", "vit_h"])
def test_official_large_variants_are_inferred(name):
    build_sam = pytest.importorskip("segment_anything.build_sam")
    with torch.device("meta"):
        state = build_sam.sam_model_registry[name]().state_dict()
        ours = SAM(name).state_dict()
    assert infer_sam_config(state) == SAM_CONFIGS[name]
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in state.items()}


def test_vit_b_file_loads_with_and_without_variant(vit_b_file):
    for variant in (None, "vit_b"):
        sam = load_sam_checkpoint(vit_b_file, variant=variant)
        assert sam.config == SAM_CONFIGS["vit_b"] and not sam.training
        assert not any(p.is_meta for p in sam.parameters()) and not any(b.is_meta for b in sam.buffers())
        assert sam.pixel_mean.flatten().tolist() == pytest.approx([123.675, 116.28, 103.53])


def test_vit_b_file_loaded_as_vit_l_names_expected_and_found_shapes(vit_b_file):
    with pytest.raises(ValueError) as err:
        load_sam_checkpoint(vit_b_file, variant="vit_l")
    message = str(err.value)
    assert "not a SAM vit_l checkpoint (the file looks like vit_b)" in message
    assert "image_encoder.patch_embed.proj.weight: expected (1024, 3, 16, 16), found (768, 3, 16, 16)" in message
    assert "missing keys: image_encoder.blocks.12." in message  # vit_l has 24 blocks, the file 12


def test_tiny_file_loaded_as_vit_b_names_the_file_and_its_sizes(tmp_path):
    state = _tiny_state()
    del state["image_encoder.blocks.3.attn.rel_pos_h"]  # not any named configuration
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="missing key image_encoder.blocks.3.attn.rel_pos_h"):
        load_sam_checkpoint(tmp_path / "odd.pth")
    with pytest.raises(ValueError, match=r"expected \(768, 3, 16, 16\), found \(64, 3, 16, 16\)"):
        load_sam_checkpoint(tmp_path / "odd.pth", variant="vit_b")


# ------------------------------------------------------------------------------ our own files round-trip
def test_round_trip_of_sam_tiny(tmp_path):
    sam = create_model("sam_tiny", seed=3).eval()
    torch.save(sam.state_dict(), tmp_path / "tiny.pth")
    for variant in (None, "tiny"):
        loaded = load_sam_checkpoint(tmp_path / "tiny.pth", variant=variant)
        assert loaded.config == SAM_CONFIGS["tiny"]
        image = sam.normalize_and_pad(torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 255)
        box = torch.tensor([[10.0, 20.0, 90.0, 100.0]])
        with torch.no_grad():
            for a, b in zip(sam(image, boxes=box), loaded(image, boxes=box), strict=True):
                assert torch.equal(a, b)


def test_training_checkpoints_are_unwrapped(tmp_path):
    state = _tiny_state()
    fit_like = {"model": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 2, "config": {"seed": 0}}
    torch.save(fit_like, tmp_path / "last.pt")
    assert load_sam_checkpoint(tmp_path / "last.pt").config == SAM_CONFIGS["tiny"]
    ddp = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    torch.save(ddp, tmp_path / "ddp.pt")
    assert load_sam_checkpoint(tmp_path / "ddp.pt").config == SAM_CONFIGS["tiny"]


def test_half_precision_file_loads_as_float32(tmp_path):
    state = {k: v.half() for k, v in _tiny_state().items()}
    torch.save(state, tmp_path / "half.pth")
    sam = load_sam_checkpoint(tmp_path / "half.pth")
    assert all(p.dtype == torch.float32 for p in sam.parameters())
    torch.testing.assert_close(sam.mask_decoder.iou_token.weight, state["mask_decoder.iou_token.weight"].float())


def test_inference_reads_every_size_off_the_shapes():
    cfg = SAMConfig(img_size=96, patch_size=8, encoder_dim=48, encoder_depth=3, encoder_heads=3,
                    global_attn_indexes=(0, 2), window_size=5, mlp_ratio=2.5, prompt_dim=64, mask_in_chans=8,
                    decoder_depth=1, decoder_mlp_dim=96, attention_downsample_rate=4, num_multimask_outputs=2,
                    iou_head_depth=2, iou_head_hidden_dim=40)
    with torch.device("meta"):
        state = SAM(cfg).state_dict()
    assert infer_sam_config(state) == cfg
    assert variant_of(cfg) is None
    # decoder heads leave no trace in the shapes: the keyword sets them
    assert infer_sam_config(state, decoder_heads=4) == dataclasses.replace(cfg, decoder_heads=4)


# ------------------------------------------------------------------------------ files that are not SAM
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sam_checkpoint(tmp_path / "nope.pth")


@pytest.mark.parametrize("content, match", [
    ([1, 2, 3], "holds a list, expected a state dict"),
    ({"fc.weight": torch.zeros(2)},
     r"no image_encoder\.\*, prompt_encoder\.\* or mask_decoder\.\* keys \(found fc\.weight\)"),
    ({"model": {"fc.weight": torch.zeros(2)}, "epoch": 1}, r"keys \(found model, epoch\)"),
    ({"mask_decoder.iou_token.weight": "text"}, "holds a str, expected a tensor"),
    ({"mask_decoder.iou_token.weight": torch.zeros(1, 4)}, "missing key image_encoder.patch_embed.proj.weight"),
])
def test_not_a_sam_checkpoint(tmp_path, content, match):
    torch.save(content, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=match):
        load_sam_checkpoint(tmp_path / "bad.pth")


def test_unreadable_and_unsafe_files(tmp_path):
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="could not be read with torch.load"):
        load_sam_checkpoint(tmp_path / "text.pth")
    # an object that is not a tensor or a plain container: weights_only refuses to unpickle it
    torch.save({"image_encoder.x": PurePosixPath("a")}, tmp_path / "pickle.pth")
    with pytest.raises(ValueError, match="weights_only"):
        load_sam_checkpoint(tmp_path / "pickle.pth")


def test_unexpected_and_renamed_keys_are_listed(tmp_path):
    state = _tiny_state()
    state["mask_decoder.extra_head.weight"] = torch.zeros(3)
    state["mask_decoder.iou_tokens.weight"] = state.pop("mask_decoder.iou_token.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(ValueError) as err:
        load_sam_checkpoint(tmp_path / "renamed.pth")
    message = str(err.value)
    assert "1 missing keys: mask_decoder.iou_token.weight" in message
    assert "2 unexpected keys: mask_decoder.extra_head.weight; mask_decoder.iou_tokens.weight" in message


def test_bad_variant_name_and_bad_state_dict(tmp_path):
    torch.save(_tiny_state(), tmp_path / "tiny.pth")
    with pytest.raises(ValueError, match="variant must be None or one of"):
        load_sam_checkpoint(tmp_path / "tiny.pth", variant="vit_x")
    with pytest.raises(ValueError, match="state_dict must be a mapping"):
        infer_sam_config([1, 2])
    state = _tiny_state()
    state["image_encoder.blocks.1.attn.rel_pos_h"] = torch.zeros(14, 16)  # an even number of rows
    with pytest.raises(ValueError, match="rel_pos_h has 14 rows"):
        infer_sam_config(state)
    with pytest.raises(ValueError, match="not a SAM checkpoint"):
        sam_state_dict(torch.zeros(3))

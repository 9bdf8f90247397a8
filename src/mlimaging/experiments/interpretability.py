r"""Experiment ``interpretability``: why did the network decide that, and can the answer be trusted?

Sections of the report (models trained by :func:`mlimaging.training.fit`; every method from
:mod:`mlimaging.interpretability`):

1. **LeNet on mnist5k** (Adam, cross-entropy), the model every digit section explains.
2. **Attribution maps** for the same test digits (one per class): saliency
   :math:`|\partial y_c / \partial x|` (Simonyan et al. 2014), input x gradient, SmoothGrad
   (Smilkov et al. 2017), integrated gradients (Sundararajan et al. 2017), DeconvNet (Zeiler &
   Fergus 2014), guided backpropagation (Springenberg et al. 2015), Grad-CAM and guided
   Grad-CAM (Selvaraju et al. 2017) on ``conv2``, and occlusion.
3. **Sanity checks**: cascading randomisation of LeNet's layers from the top down (Adebayo et
   al. 2018), Spearman rank correlation of each map with the trained model's. A map that
   stays correlated after the weights are destroyed explains the input, not the model;
   guided backpropagation is the known failure.
4. **Deletion and insertion** (Petsiuk et al. 2018): the class probability as the pixels a
   map ranks first are deleted (to black) or inserted (into a blurred copy); areas per method,
   against a random map.
5. **Occlusion** with several window sizes: the drop of the class logit when a grey square
   hides each region.
6. **Feature visualisation**: LeNet's first-layer filters, class model visualisations
   :math:`\arg\max_I S_c(I) - \lambda \lVert I \rVert^2` (Simonyan et al. 2014) and DeepDream
   (Mordvintsev et al. 2015) on scikit-image's camera image, with LeNet's fully convolutional
   twin (:class:`mlimaging.models.FCLeNet`, the same weights on any image size).
7. **Channel ablation**: the test accuracy lost when each channel of ``conv1`` and ``conv2``
   is zeroed.
8. **t-SNE** (van der Maaten & Hinton 2008) of raw pixels against LeNet's penultimate features
   (the 84 values ``fc3`` reads), with the trustworthiness of each map (Venna & Kaski 2001)
   and the accuracy of a 5-nearest-neighbour vote inside the 2-D map.
9. **Medical example**: a U-Net segments 2D phantoms (body, organ, lesion); which pixels made
   it call this region a lesion? Target: the sum of the lesion logits inside the predicted
   lesion. Maps overlaid on the phantom, and the lesion score lost when each structure of the
   phantom is ablated (:func:`~mlimaging.interpretability.feature_ablation` with the label
   map as segments).

Every number depends only on ``seed`` (timings aside).

References
----------
Simonyan K., Vedaldi A., Zisserman A. (2014). Deep inside convolutional networks. ICLR
workshop. arXiv:1312.6034.

Adebayo J. et al. (2018). Sanity checks for saliency maps. NeurIPS. arXiv:1810.03292.

Petsiuk V., Das A., Saenko K. (2018). RISE. BMVC. arXiv:1806.07421.

Mordvintsev A., Olah C., Tyka M. (2015). Inceptionism: going deeper into neural networks.
Google Research blog.

Venna J., Kaski S. (2001). Neighborhood preservation in nonlinear projection methods. ICANN.

Examples
--------
>>> from mlimaging.experiments import run_experiment
>>> run = run_experiment("interpretability", quick=True, seed=0, out="runs/interp")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mlimaging.experiments.registry import ExperimentConfig, experiment
from mlimaging.reporting import Run
from mlimaging.reporting.figures import plt

__all__ = ["FULL", "METHODS", "QUICK", "InterpretabilityConfig"]

#: Attribution methods of the digit sections and their options on LeNet.
METHODS: dict[str, dict[str, Any]] = {
    "saliency": {},
    "input_x_gradient": {},
    "smoothgrad": {"sigma": 0.15},
    "integrated_gradients": {"steps": 32},
    "deconvnet": {},
    "guided_backprop": {},
    "grad_cam": {"layer": "conv2"},
    "guided_grad_cam": {"layer": "conv2"},
    "occlusion": {"window": 4, "stride": 2},
}
#: Maps of the medical example (U-Net on phantoms): name -> (method, options). Grad-CAM on the last
#: decoder block (full resolution) and on the bottleneck, where a region's class is decided coarsely.
SEG_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "saliency": ("saliency", {}),
    "integrated_gradients": ("integrated_gradients", {"steps": 32}),
    "guided_backprop": ("guided_backprop", {}),
    "grad_cam (last decoder)": ("grad_cam", {"layer": "decoders.0"}),
    "grad_cam (bottleneck)": ("grad_cam", {"layer": "encoders.2"}),
    "occlusion": ("occlusion", {"window": 4, "stride": 2}),
}
STRUCTURES = {0: "background", 1: "body", 2: "organ", 3: "lesion"}

#: Quick mode: every section on few images and steps (LeNet still trains on all 3,500 digits).
QUICK: dict[str, Any] = {
    "n_train": None, "epochs": 2, "digits": 5, "smoothgrad_samples": 10, "sanity_images": 8,
    "deletion_images": 16, "deletion_steps": 14, "ablation_images": 500, "tsne_points": 200,
    "tsne_iter": 400, "cmv_steps": 40, "dream_size": 96, "dream_octaves": 3, "dream_steps": 4,
    "phantoms": 16, "phantom_size": 48, "unet_epochs": 10,
}
#: Full mode: one digit per class, the test set for ablation, larger maps and more steps.
FULL: dict[str, Any] = {
    "n_train": None, "epochs": 10, "digits": 10, "smoothgrad_samples": 50, "sanity_images": 32,
    "deletion_images": 100, "deletion_steps": 28, "ablation_images": None, "tsne_points": 1000,
    "tsne_iter": 1000, "cmv_steps": 200, "dream_size": 256, "dream_octaves": 4, "dream_steps": 10,
    "phantoms": 48, "phantom_size": 64, "unet_epochs": 30,
}


@dataclass
class InterpretabilityConfig(ExperimentConfig):
    """Settings of the ``interpretability`` experiment; ``None`` takes the quick/full value
    (:data:`QUICK`, :data:`FULL`).

    Attributes
    ----------
    n_train
        mnist5k training images for LeNet (stratified subset; None: all 3,500).
    epochs
        LeNet's training epochs (Adam, lr 2e-3, batch 64).
    digits
        Test digits shown in the map grids (one per class, up to 10).
    smoothgrad_samples
        Noisy copies per image of SmoothGrad.
    sanity_images, deletion_images, deletion_steps
        Test images of the sanity checks and of the deletion/insertion curves, and the curves' steps.
    ablation_images
        Test images of the channel ablation (None: all 1,000).
    tsne_points, tsne_iter
        Test digits of the t-SNE maps and t-SNE iterations.
    cmv_steps
        Gradient-ascent steps of each class model visualisation.
    dream_size, dream_octaves, dream_steps
        Side of the camera image given to DeepDream, its octaves and steps per octave.
    phantoms, phantom_size, unet_epochs
        2D training phantoms of the medical example, their size and the U-Net's epochs.
    methods
        Attribution methods of the digit sections (keys of :data:`METHODS`).
    """

    n_train: int | None = None
    epochs: int | None = None
    digits: int | None = None
    smoothgrad_samples: int | None = None
    sanity_images: int | None = None
    deletion_images: int | None = None
    deletion_steps: int | None = None
    ablation_images: int | None = None
    tsne_points: int | None = None
    tsne_iter: int | None = None
    cmv_steps: int | None = None
    dream_size: int | None = None
    dream_octaves: int | None = None
    dream_steps: int | None = None
    phantoms: int | None = None
    phantom_size: int | None = None
    unet_epochs: int | None = None
    methods: tuple[str, ...] = tuple(METHODS)


def _resolve(cfg: InterpretabilityConfig) -> dict[str, Any]:
    base = QUICK if cfg.quick else FULL
    p = {k: getattr(cfg, k) if getattr(cfg, k) is not None else v for k, v in base.items()}
    for key, value in p.items():
        if value is None and key in ("n_train", "ablation_images"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    if p["tsne_points"] < 20:
        raise ValueError(f"tsne_points must be >= 20, got {p['tsne_points']}")
    if p["phantom_size"] % 4:
        raise ValueError(f"phantom_size must be a multiple of 4 (two poolings of the U-Net), got {p['phantom_size']}")
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown or not cfg.methods:
        raise ValueError(f"methods must be a non-empty selection of {list(METHODS)}, got {list(cfg.methods)}")
    return p


def _kw(method: str, p: dict[str, Any], seed: int) -> dict[str, Any]:
    kw = dict(METHODS[method])
    if method == "smoothgrad":
        kw.update(samples=p["smoothgrad_samples"], seed=seed)
    return kw


def _explain(model: nn.Module, x: torch.Tensor, target: Any, method: str, p: dict[str, Any], seed: int) -> torch.Tensor:
    from mlimaging.interpretability import attribute

    return attribute(model, x, target, method=method, **_kw(method, p, seed))


def _explain_kw(model: nn.Module, x: torch.Tensor, target: Any, method: str, kw: dict[str, Any]) -> torch.Tensor:
    from mlimaging.interpretability import attribute

    return attribute(model, x, target, method=method, **kw)


def _show(ax: Any, amap: np.ndarray, image: np.ndarray | None = None) -> None:
    """A map on its own axes: signed maps red/blue around 0, unsigned ones from black to hot."""
    vmax = float(np.abs(amap).max()) or 1.0
    if image is not None:
        ax.imshow(image, cmap="gray")
    if amap.min() < 0:
        ax.imshow(amap, cmap="RdBu_r", vmin=-vmax, vmax=vmax, alpha=0.65 if image is not None else 1.0)
    elif image is not None:
        ax.imshow(np.ma.masked_less_equal(amap, 0.05 * vmax), cmap="hot", vmin=0, vmax=vmax, alpha=0.7)
    else:
        ax.imshow(amap, cmap="hot", vmin=0, vmax=vmax)
    ax.axis("off")


# ------------------------------------------------------------------------------------ data and models
def _load(cfg: InterpretabilityConfig, p: dict[str, Any]) -> dict[str, Any]:
    from mlimaging.experiments.classification import class_subset, load_images

    data: dict[str, Any] = {}
    for split, key in (("train", "tr"), ("val", "va"), ("test", "te")):
        x, y, classes = load_images("mnist5k", split, seed=cfg.seed, image_size=28)
        if key == "tr" and p["n_train"] is not None and p["n_train"] < len(y):
            idx = class_subset(y, total=p["n_train"], seed=cfg.seed)
            x, y = x[idx], y[idx]
        data["x" + key], data["y" + key] = x, y
    data["classes"] = classes
    return data


def _lenet_section(cfg: InterpretabilityConfig, p: dict[str, Any], run: Run, data: dict[str, Any]) -> nn.Module:
    from mlimaging.metrics import accuracy
    from mlimaging.models import create_model
    from mlimaging.training import fit

    run.section("1. LeNet on mnist5k", f"LeNet-5 (ReLU, max-pooling) trained for {p['epochs']} epochs on "
                f"{len(data['ytr'])} mnist5k digits with Adam (learning rate 2e-3, batch 64): the classifier the "
                "next sections explain. Its inputs are light digits on black in [0, 1], so 0 (black) is the "
                "natural baseline of occlusion, integrated gradients and deletion.")
    model = create_model("lenet", num_classes=10, seed=cfg.seed)
    t0 = time.perf_counter()
    history = fit(model, TensorDataset(data["xtr"], data["ytr"]), TensorDataset(data["xva"], data["yva"]),
                  loss=nn.CrossEntropyLoss(), optimizer=lambda q: torch.optim.Adam(q, lr=2e-3), epochs=p["epochs"],
                  batch_size=64, seed=cfg.seed, progress=not cfg.quick)
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        pred = model(data["xte"]).argmax(1)
    acc = accuracy(pred, data["yte"])
    data["pred"] = pred
    run.table("LeNet", [{"model": "lenet", "epochs": p["epochs"], "train images": len(data["ytr"]),
                         "val accuracy": history["val_accuracy"][-1], "test accuracy": acc,
                         "train seconds": round(seconds, 2), "seed": cfg.seed}],
              caption=f"Test accuracy on {len(data['yte'])} mnist5k test digits (seed {cfg.seed}).")
    run.log(lenet_test_accuracy=acc, lenet_history=history.epochs)
    return model


def _pick(data: dict[str, Any], n: int) -> list[int]:
    """The first correctly classified test digit of each of the first ``n`` classes."""
    y, pred = data["yte"], data["pred"]
    out = []
    for c in range(min(n, 10)):
        ok = torch.nonzero((y == c) & (pred == c)).flatten()
        idx = ok if len(ok) else torch.nonzero(y == c).flatten()
        out.append(int(idx[0]))
    return out


def _maps_section(cfg: InterpretabilityConfig, p: dict[str, Any], run: Run, data: dict[str, Any],
                  model: nn.Module) -> None:
    methods = list(cfg.methods)
    run.section("2. Attribution maps", "The same test digits explained by every method, for their true class. "
                "Gradient maps (saliency, SmoothGrad) show where a small change of a pixel changes the score most; "
                "input x gradient and integrated gradients also weigh how much of the pixel is there (black "
                "pixels get nothing: the baseline is black); DeconvNet and guided backpropagation pass only "
                "positive signals back through the ReLUs and look like sharp edge images; Grad-CAM is coarse "
                "(conv2's 10 x 10 grid upsampled); occlusion (window 4, stride 2) is the drop of the class logit "
                "when a black square hides each region. Red: positive, blue: negative evidence.")
    idx = _pick(data, p["digits"])
    x, y = data["xte"][idx], data["yte"][idx]
    maps, rows = {}, []
    for m in run.track(methods, "attribution maps"):
        t0 = time.perf_counter()
        maps[m] = _explain(model, x, y, m, p, cfg.seed)[:, 0].numpy()
        rows.append({"method": m, "ms per image": 1e3 * (time.perf_counter() - t0) / len(idx),
                     "signed": bool((maps[m] < 0).any()), "options": str(_kw(m, p, cfg.seed))})
    fig, axes = plt.subplots(len(idx), len(methods) + 1, figsize=(1.25 * (len(methods) + 1), 1.3 * len(idx)),
                             squeeze=False)
    for r in range(len(idx)):
        axes[r, 0].imshow(x[r, 0].numpy(), cmap="gray")
        axes[r, 0].axis("off")
        for c, m in enumerate(methods, start=1):
            _show(axes[r, c], maps[m][r])
            if r == 0:
                axes[r, c].set_title(m.replace("_", " "), fontsize=6.5)
    axes[0, 0].set_title("digit", fontsize=6.5)
    fig.suptitle(f"Attribution maps of LeNet for the true class (seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "attribution-maps", caption="Rows: test digits; columns: methods, each map scaled to its own "
               "maximum.")
    run.table("Attribution methods", rows, caption=f"Time per image on {len(idx)} digits (CPU).")
    run.log(attribution_ms_per_image={r["method"]: r["ms per image"] for r in rows})


def _sanity_section(cfg: InterpretabilityConfig, p: dict[str, Any], run: Run, data: dict[str, Any],
                    model: nn.Module) -> None:
    from mlimaging.interpretability import sanity_check

    n = p["sanity_images"]
    x, y = data["xte"][:n], data["yte"][:n]
    run.section("3. Sanity checks: cascading randomisation", f"LeNet's layers are re-initialised one after the "
                "other from the output (fc3) down to conv1, each on top of the previous ones, and the map is "
                f"recomputed after each step for {len(y)} test digits; the curve is the mean Spearman rank "
                "correlation of the absolute maps with the trained model's (Adebayo et al. 2018). A map that "
                "explains the model must decorrelate once the weights it reads are gone.")
    curves, rows = {}, []
    for m in run.track(list(cfg.methods), "sanity checks"):
        kw = _kw(m, p, cfg.seed)
        # sanity_check's own seed seeds the randomised layers; SmoothGrad's noise seed goes in a closure
        method = (lambda net, xs, t, kw=kw: _explain_kw(net, xs, t, "smoothgrad", kw)) if "seed" in kw else m
        res = sanity_check(model, x, y, method=method, seed=cfg.seed, **({} if "seed" in kw else kw))
        curves[m] = res
        rho = [r["spearman"] for r in res]
        rows.append({"method": m, "after fc3": rho[1], "after fc1 (3 layers)": rho[3] if len(rho) > 3 else rho[-1],
                     "all layers random": rho[-1], "passes (< 0.5 after all)": bool(rho[-1] < 0.5)})
    run.table("Sanity check per method", rows, caption="Mean Spearman correlation with the trained model's maps "
              "after randomising the top layer, the three fully connected layers, and all five layers.")
    layers = [r["layer"] for r in next(iter(curves.values()))]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for m, res in curves.items():
        ax.plot(range(len(res)), [r["spearman"] for r in res], "o-", ms=3, lw=2.5 if m == "guided_backprop" else 1.2,
                label=m)
    ax.set_xticks(range(len(layers)), ["trained"] + [f"+{name}" for name in layers[1:]], fontsize=8)
    ax.set(xlabel="layers randomised (cumulative, top down)", ylabel="Spearman rank correlation", ylim=(-0.1, 1.05))
    ax.axhline(0, color="black", lw=0.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, ncol=2)
    ax.set_title(f"Cascading randomisation (seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "sanity-checks", caption="Correlation of each method's maps with the trained model's as "
               "LeNet's layers are randomised from the top down.")
    stay = [r for r in rows if not r["passes (< 0.5 after all)"]]
    text = []
    gbp = next((r for r in rows if r["method"] == "guided_backprop"), None)
    sal = next((r for r in rows if r["method"] == "saliency"), None)
    if gbp is not None:
        ref = f" (saliency: {sal['all layers random']:.2f})" if sal is not None else ""
        text.append(f"Guided backpropagation keeps a rank correlation of {gbp['all layers random']:.2f} with its "
                    f"trained-model maps after every layer is random{ref}: its ReLU rule discards most of what the "
                    "weights say, so the map is largely an edge image of the input, and a sharp, plausible map is "
                    "no evidence that it explains the model (Adebayo et al. 2018; Nie et al. 2018 show guided "
                    "backpropagation partly recovers the image).")
    mult = [r for r in stay if r["method"] in ("input_x_gradient", "integrated_gradients", "occlusion")]
    if mult:
        values = ", ".join(f"{r['all layers random']:.2f}" for r in mult)
        text.append(f"{', '.join(r['method'] for r in mult)} also stay correlated ({values}): these maps are zero "
                    "wherever the input equals the black baseline, so the digit's own shape fixes most of their "
                    "ranks whatever the weights; Adebayo et al. (2018) report the same input dominance for "
                    "gradient x input and integrated gradients.")
    if text:
        run.text("\n\n".join(text))
    run.log(sanity={m: [{"layer": r["layer"], "spearman": r["spearman"]} for r in res] for m, res in curves.items()})


def _deletion_section(cfg: InterpretabilityConfig, p: dict[str, Any], run: Run, data: dict[str, Any],
                      model: nn.Module) -> None:
    from mlimaging.interpretability import deletion_insertion

    n = p["deletion_images"]
    x, y = data["xte"][:n], data["yte"][:n]
    run.section("4. Deletion and insertion", f"For {len(y)} test digits, pixels are ranked by each map; deletion "
                "sets the top-ranked pixels to black, insertion copies them into a blurred copy (Gaussian, "
                f"sigma 5 px), over {p['deletion_steps']} steps, recording the probability of the true class "
                "(Petsiuk et al. 2018). A faithful map has a small deletion area and a large insertion area. A "
                "seeded random map is the reference.")
    g = torch.Generator().manual_seed(cfg.seed)
    candidates = {m: None for m in cfg.methods}
    candidates["random"] = torch.rand(x.shape, generator=g)
    rows, curves = [], {}
    for m in run.track(list(candidates), "deletion/insertion"):
        amap = candidates[m] if candidates[m] is not None else _explain(model, x, y, m, p, cfg.seed)
        res = deletion_insertion(model, x, y, amap, steps=p["deletion_steps"])
        curves[m] = res
        rows.append({"method": m, "deletion AUC": float(res["deletion_auc"].mean()),
                     "insertion AUC": float(res["insertion_auc"].mean()),
                     "insertion - deletion": float((res["insertion_auc"] - res["deletion_auc"]).mean())})
    rows.sort(key=lambda r: -r["insertion - deletion"])
    run.table("Deletion and insertion areas", rows, caption=f"Means over {len(y)} test digits; lower deletion and "
              "higher insertion areas are better (sorted by their difference).")
    run.log(deletion_insertion={r["method"]: {"deletion_auc": r["deletion AUC"], "insertion_auc": r["insertion AUC"]}
                                for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for m, res in curves.items():
        style = dict(color="black", ls="--") if m == "random" else {}
        axes[0].plot(res["fractions"], res["deletion"].mean(0), lw=1.2, label=m, **style)
        axes[1].plot(res["fractions"], res["insertion"].mean(0), lw=1.2, label=m, **style)
    axes[0].set(title="deletion (lower is better)", xlabel="fraction of pixels deleted", ylabel="p(true class)")
    axes[1].set(title="insertion (higher is better)", xlabel="fraction of pixels inserted")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6.5)
    fig.suptitle(f"Deletion and insertion curves, mean over {len(y)} digits (seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "deletion-insertion", caption="Mean probability of the true class as pixels are deleted or "
               "inserted in each map's order; the dashed black curve is a random order.")


def _occlusion_section(cfg: InterpretabilityConfig, p: dict[str, Any], run: Run, data: dict[str, Any],
                       model: nn.Module) -> None:
    from mlimaging.interpretability import occlusion

    run.section("5. Occlusion", "A black square slides over the digit (stride half the window); each pixel gets "
                "the mean drop of the class logit over the windows that hide it (Zeiler & Fergus 2014). Small "
                "windows find the strokes that matter; large ones show which part of the digit decides the class.")
    idx = _pick(data, 4)
    x, y = data["xte"][idx], data["yte"][idx]
    windows = (2, 4, 8)
    maps = {w: occlusion(model, x, y, window=w, stride=max(1, w // 2))[:, 0].numpy() for w in windows}
    fig, axes = plt.subplots(len(idx), 1 + len(windows), figsize=(1.6 * (1 + len(windows)), 1.6 * len(idx)),
                             squeeze=False)
    for r in range(len(idx)):
        axes[r, 0].imshow(x[r, 0].numpy(), cmap="gray")
        axes[r, 0].axis("off")
        for c, w in enumerate(windows, start=1):
            _show(axes[r, c], maps[w][r], x[r, 0].numpy())
            if r == 0:
                axes[r, c].set_title(f"window {w}", fontsize=8)
    fig.suptitle(f"Occlusion maps over the digits (seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "occlusion", caption="Drop of the true class's logit when each region is hidden (red: the "
               "region supports the class; blue: hiding it raises the score).")
    run.log(occlusion_max_drop={w: float(maps[w].max()) for w in windows})


def _camera(size: int) -> torch.Tensor:
    """scikit-image's camera image (bundled, 512 x 512 uint8) as ``(1, 1, size, size)`` in [0, 1]."""
    import torch.nn.functional as F
    from skimage import data as skdata

    image = torch.from_numpy(skdata.camera().astype(np.float32) / 255.0)[None, None]
    return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def _features_section(cfg: InterpretabilityConfig, p: dict[str, Any], run: Run, data: dict[str, Any],
                      model: nn.Module) -> None:
    from mlimaging.interpretability import class_model_visualization, deep_dream, visualize_filters
    from mlimaging.models import FCLeNet

    run.section("6. Feature visualisation", "LeNet's six first-layer 5 x 5 filters (each scaled to [0, 1]); class "
                "model visualisations: the image in [0, 1] that maximises each class logit minus "
                f"0.01 ||I||^2, by {p['cmv_steps']} steps of gradient ascent from a black image (Simonyan et al. "
                "2014); and DeepDream (Mordvintsev et al. 2015): gradient ascent on the energy of a layer's "
                "activations over an image pyramid, here on scikit-image's camera image "
                f"({p['dream_size']} x {p['dream_size']} px), run by FCLeNet (LeNet's weights as a fully "
                "convolutional network, so any image size is accepted).")
    filters = visualize_filters(model, "conv1")
    cmv = [class_model_visualization(model, c, steps=p["cmv_steps"], lr=0.1, weight_decay=1e-2,
                                     input_shape=(1, 28, 28), value_range=(0.0, 1.0), seed=cfg.seed)[0, 0]
           for c in range(10)]
    with torch.no_grad():
        scores = torch.softmax(model(torch.stack(cmv)[:, None]), 1).diagonal()
    fig, axes = plt.subplots(1, 11, figsize=(13, 1.7), gridspec_kw={"width_ratios": [1.6] + [1] * 10})
    axes[0].imshow(filters.permute(1, 2, 0).numpy() if filters.shape[0] == 3 else filters[0].numpy(), cmap="gray")
    axes[0].set_title("conv1 filters", fontsize=8)
    for c in range(10):
        axes[c + 1].imshow(cmv[c].numpy(), cmap="gray", vmin=0, vmax=1)
        axes[c + 1].set_title(f"{data['classes'][c]}: p={float(scores[c]):.2f}", fontsize=7)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"First-layer filters and class model visualisations (seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "filters-and-class-models", caption="Left: conv1's kernels. Right: the image each class logit "
               "prefers, with the softmax probability LeNet gives it.")
    run.log(class_model_probability=scores.tolist())

    fcn = FCLeNet.from_lenet(model).eval()
    camera = _camera(p["dream_size"])
    dreams = {layer: deep_dream(fcn, camera, layer=layer, octaves=p["dream_octaves"], octave_scale=1.4,
                                steps=p["dream_steps"], jitter=2, lr=0.005, seed=cfg.seed)[0, 0]
              for layer in ("conv1", "conv2", "fc1")}
    fig, axes = plt.subplots(1, 4, figsize=(11, 3.0))
    axes[0].imshow(camera[0, 0].numpy(), cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("camera", fontsize=9)
    for ax, (layer, img) in zip(axes[1:], dreams.items(), strict=True):
        ax.imshow(img.numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"DeepDream, layer {layer}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"DeepDream with LeNet's filters ({p['dream_octaves']} octaves x {p['dream_steps']} steps, "
                 f"seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "deepdream-camera", caption="The camera image and its dreams at three depths of LeNet: what "
               "each layer responds to, amplified where the image already excites it.")
    run.log(dream_change={k: float((v - camera[0, 0]).abs().mean()) for k, v in dreams.items()})


def _ablation_section(cfg: InterpretabilityConfig, p: dict[str, Any], run: Run, data: dict[str, Any],
                      model: nn.Module) -> None:
    from mlimaging.interpretability import ablate_channels

    n = p["ablation_images"] or len(data["yte"])
    test = (data["xte"][:n], data["yte"][:n])
    run.section("7. Channel ablation", f"Each channel of conv1 and conv2 is set to zero in turn (a forward hook) "
                f"and the accuracy on {min(n, len(data['yte']))} test digits is measured again; the bar is the "
                "accuracy lost. A few channels carry most of the decision; others are redundant.")
    res = {layer: ablate_channels(model, test, layer=layer) for layer in ("conv1", "conv2")}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.0), gridspec_kw={"width_ratios": [6, 16]})
    rows = []
    for ax, (layer, r) in zip(axes, res.items(), strict=True):
        ax.bar(r["channels"], 100 * r["drop"], color="tab:red")
        ax.set(title=f"{layer} (accuracy {100 * r['baseline_accuracy']:.1f}%)", xlabel="channel zeroed",
               ylabel="accuracy lost (points)", xticks=r["channels"])
        ax.grid(alpha=0.3, axis="y")
        top = int(np.argmax(r["drop"]))
        rows.append({"layer": layer, "channels": len(r["channels"]), "baseline accuracy": r["baseline_accuracy"],
                     "largest drop": float(r["drop"][top]), "channel": int(r["channels"][top]),
                     "mean drop": float(np.mean(r["drop"])), "channels costing < 1 point": int((r["drop"] < 0.01).sum())})
    fig.suptitle(f"Channel ablation (seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "channel-ablation", caption="Test accuracy lost when each channel is zeroed.")
    run.table("Channel ablation", rows, caption="Per layer: the most important channel and how many cost less than "
              "one point of accuracy.")
    run.log(channel_ablation={k: {"baseline": v["baseline_accuracy"], "drop": v["drop"]} for k, v in res.items()})


def _tsne_section(cfg: InterpretabilityConfig, p: dict[str, Any], run: Run, data: dict[str, Any],
                  model: nn.Module) -> None:
    from sklearn.manifold import trustworthiness
    from sklearn.neighbors import KNeighborsClassifier

    from mlimaging.experiments.classification import class_subset
    from mlimaging.interpretability import embed, tsne

    n = min(p["tsne_points"], len(data["yte"]))
    idx = class_subset(data["yte"], total=n, seed=cfg.seed)
    x, y = data["xte"][idx], data["yte"][idx].numpy()
    perplexity = float(min(30, (len(idx) - 1) // 3))
    run.section("8. t-SNE: raw pixels against LeNet's features", f"{len(idx)} test digits mapped to 2-D by t-SNE "
                f"(perplexity {perplexity:g}, PCA initialisation, {p['tsne_iter']} iterations) from their 784 pixels "
                "and from LeNet's penultimate features (the 84 ReLU outputs its last layer reads), coloured by "
                "their label. Trustworthiness (Venna & Kaski 2001, 10 neighbours) measures how many of a point's "
                "neighbours in the map were neighbours in the input space; the 5-NN accuracy measures how well "
                "the classes separate in the map (leave-one-out vote of the nearest points).")
    spaces = {"raw pixels": x.flatten(1).numpy(), "LeNet penultimate": embed(model, x, layer="penultimate")[0]}
    rows, maps = [], {}
    for name, feats in spaces.items():
        emb = tsne(feats, perplexity=perplexity, seed=cfg.seed, max_iter=p["tsne_iter"])
        maps[name] = emb
        knn = KNeighborsClassifier(n_neighbors=6).fit(emb, y)
        neigh = knn.kneighbors(emb, return_distance=False)[:, 1:]  # leave the point itself out
        vote = np.array([np.bincount(y[nb], minlength=10).argmax() for nb in neigh])
        rows.append({"features": name, "dimension": feats.shape[1],
                     "trustworthiness": float(trustworthiness(feats, emb, n_neighbors=10)),
                     "5-NN accuracy in the map": float((vote == y).mean())})
    run.table("t-SNE maps", rows, caption=f"{len(idx)} test digits (stratified); seed {cfg.seed}.")
    run.log(tsne={r["features"]: {k: v for k, v in r.items() if k != "features"} for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, (name, emb), row in zip(axes, maps.items(), rows, strict=True):
        sc = ax.scatter(emb[:, 0], emb[:, 1], c=y, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
        ax.set_title(f"{name}: trustworthiness {row['trustworthiness']:.3f}, 5-NN {row['5-NN accuracy in the map']:.3f}",
                     fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(sc, ax=axes, ticks=range(10), shrink=0.8, label="digit")
    fig.suptitle(f"t-SNE of test digits (seed {cfg.seed})", fontsize=9)
    run.figure(fig, "tsne-pixels-vs-features", caption="Left: raw pixels; right: LeNet's penultimate features.")


def _medical_section(cfg: InterpretabilityConfig, p: dict[str, Any], run: Run) -> None:
    from scipy.ndimage import binary_dilation

    from mlimaging.data import PhantomDataset
    from mlimaging.data.preprocessing import zscore
    from mlimaging.interpretability import attribute, feature_ablation
    from mlimaging.metrics import dice
    from mlimaging.segmentation.classical import BASE_KNOBS
    from mlimaging.segmentation.dense import build_segmenter, train_segmenter
    from mlimaging.segmentation.samples import SegmentationSamples

    s = p["phantom_size"]
    run.section("9. Medical example: why is this region a lesion?", f"A U-Net (2 levels, 8 channels) trained with "
                f"the Dice + cross-entropy loss for {p['unet_epochs']} epochs on {p['phantoms']} 2D phantoms of "
                f"{s} x {s} px (noise, bias field, partial volume; body, organ and lesion) segments held-out "
                "phantoms. The explained score is the sum of the lesion logits inside the region the U-Net "
                "calls lesion (a class and a region mask); the maps say which pixels raised it. Grad-CAM is "
                "computed on the last decoder block (full resolution) and on the bottleneck (a quarter of it); "
                "occlusion uses a 4 px window (stride 2) set to the image mean. "
                "The U-Net uses in-place ReLUs, which the guided-backprop rule handles. Last, each structure of "
                "the phantom is ablated as a whole (set to the mean) and the lesion score lost is measured.")
    train = PhantomDataset(p["phantoms"], (s, s), seed=1000 * cfg.seed + 31, n_structures=3, **BASE_KNOBS)
    test = PhantomDataset(8, (s, s), seed=1000 * cfg.seed + 32, n_structures=3, **BASE_KNOBS)
    net = build_segmenter("unet", num_classes=4, seed=cfg.seed, channels=8, depth=2)
    history = train_segmenter(net, SegmentationSamples(train), epochs=p["unet_epochs"], batch_size=4, lr=1e-2,
                              seed=cfg.seed)
    net.eval()
    items = [test[i] for i in range(len(test))]
    x = torch.stack([zscore(im) for im, _ in items])
    gt = torch.stack([torch.as_tensor(lab) for _, lab in items]).numpy()
    with torch.no_grad():
        pred = net(x).argmax(1).numpy()
    lesion_dice = [dice(pr == 3, g == 3) for pr, g in zip(pred, gt, strict=True)]
    found = [i for i in range(len(items)) if (pred[i] == 3).any()]
    shown = found[:2] or [0]
    rows, maps = [], {}
    for i in shown:
        region = torch.from_numpy(pred[i] == 3) if (pred[i] == 3).any() else torch.from_numpy(gt[i] == 3)
        target = (3, region)
        ring = binary_dilation(region.numpy(), iterations=3)
        for m, (method, kw) in SEG_METHODS.items():
            amap = attribute(net, x[i:i + 1], target, method=method, **kw)[0, 0].numpy()
            maps[(i, m)] = amap
            mass = np.abs(amap)
            rows.append({"phantom": i, "method": m, "lesion Dice": lesion_dice[i],
                         "attribution in lesion + 3 px": float(mass[ring].sum() / max(mass.sum(), 1e-12)),
                         "area of lesion + 3 px": float(ring.mean())})
        drops = feature_ablation(net, x[i:i + 1], target, segments=torch.from_numpy(gt[i]))[0, 0].numpy()
        base = float((net(x[i:i + 1])[0, 3] * region).sum().detach())
        for k, name in STRUCTURES.items():
            if (gt[i] == k).any():
                rows_ab = {"phantom": i, "structure ablated": name, "lesion score lost": float(drops[gt[i] == k][0]),
                           "fraction of the score": float(drops[gt[i] == k][0]) / base if base else float("nan")}
                maps.setdefault("ablation", []).append(rows_ab)
    run.table("Lesion attributions", rows, caption="Share of each map's absolute attribution inside the predicted "
              "lesion dilated by 3 px, against the share of the image that region covers (a map that ignored the "
              f"lesion would score about the area). U-Net lesion Dice per test phantom; seed {cfg.seed}.")
    run.table("Structure ablation", maps.pop("ablation", []), caption="Drop of the explained lesion score (sum of "
              "lesion logits in the predicted lesion) when every pixel of one ground-truth structure is set to the "
              "image mean.")
    share = {m: float(np.mean([r["attribution in lesion + 3 px"] for r in rows if r["method"] == m])) for m in SEG_METHODS}
    area = float(np.mean([r["area of lesion + 3 px"] for r in rows]))
    low = [m for m, v in share.items() if v < area]
    run.text(f"The lesion and a 3 px ring cover {100 * area:.1f}% of the image; "
             + ", ".join(f"{m} puts {100 * v:.0f}%" for m, v in share.items()) + " of its attribution there."
             + (f" {', '.join(low)} put less there than the region's area: positive evidence for the lesion class at "
                "that layer lies elsewhere (Grad-CAM averages each channel's gradient over the whole image, so at a "
                "coarse layer the weights can reward context rather than the region itself)." if low else ""))
    run.log(unet_final_loss=history["loss"][-1], unet_lesion_dice=lesion_dice,
            lesion_attribution_share={f"{r['phantom']}/{r['method']}": r["attribution in lesion + 3 px"] for r in rows})
    fig, axes = plt.subplots(len(shown), 2 + len(SEG_METHODS), figsize=(1.9 * (2 + len(SEG_METHODS)), 2.0 * len(shown)),
                             squeeze=False)
    for r, i in enumerate(shown):
        image = x[i, 0].numpy()
        axes[r, 0].imshow(image, cmap="gray")
        axes[r, 0].contour((gt[i] == 3).astype(float), levels=[0.5], colors="lime", linewidths=0.8)
        axes[r, 1].imshow(pred[i], cmap="viridis", vmin=0, vmax=3, interpolation="nearest")
        axes[r, 1].set_title(f"U-Net (lesion Dice {lesion_dice[i]:.2f})" if r == 0 else "", fontsize=7)
        for c, m in enumerate(SEG_METHODS, start=2):
            _show(axes[r, c], maps[(i, m)], image)
            axes[r, c].contour((pred[i] == 3).astype(float), levels=[0.5], colors="cyan", linewidths=0.6)
            if r == 0:
                axes[r, c].set_title(m.replace("_", " "), fontsize=7)
        axes[r, 0].axis("off")
        axes[r, 1].axis("off")
    axes[0, 0].set_title("phantom (lesion: green)", fontsize=7)
    fig.suptitle(f"Which pixels made the U-Net call this region a lesion? (seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "lesion-attributions", caption="Held-out phantoms: the image with the true lesion (green), the "
               "U-Net's labels, and each map of the lesion score over the image (cyan: the predicted lesion).")


# ------------------------------------------------------------------------------------ experiment
@experiment("interpretability", config=InterpretabilityConfig)
def interpretability_experiment(cfg: InterpretabilityConfig, run: Run) -> None:
    """Attribution maps, sanity checks, deletion/insertion, DeepDream, ablation and t-SNE on LeNet; a U-Net lesion."""
    p = _resolve(cfg)
    run.log(settings=p, methods=list(cfg.methods), torch_threads=torch.get_num_threads())
    seconds: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args)
        seconds[name] = round(time.perf_counter() - t0, 2)
        run.log(section_seconds=seconds)
        return out

    data = _load(cfg, p)
    model = timed("lenet", _lenet_section, cfg, p, run, data)
    for name, section in (("maps", _maps_section), ("sanity", _sanity_section), ("deletion", _deletion_section),
                          ("occlusion", _occlusion_section), ("features", _features_section),
                          ("ablation", _ablation_section), ("tsne", _tsne_section)):
        timed(name, section, cfg, p, run, data, model)
    timed("medical", _medical_section, cfg, p, run)

"""Fine-tune the entropy-parameter path with the transforms frozen.

Used to port trained transforms onto a new parameter path (the integer-exact one of
``model/intnet.py``) without retraining the whole codec: g_a, g_s, h_a, the hyper prior and
the gains are copied from a weights file and frozen; h_s, the ChARM nets and the LRP nets learn.

Because g_a and h_a are frozen, their outputs are computed once for a fixed set of crops (with
flips, 90° rotations and random group masks) and kept in memory; a step then runs only the
small parameter path, which is why a few CPU-hours go a long way. The loss is the usual
``bpp + λ·255²·MSE``, with the pixel MSE replaced by its first-order equivalent in the latent
domain (``Σ_c k_c·(y_c − ŷ_c)²``, k_c measured through the frozen g_s at the start), since only
the LRP changes ŷ.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from compressai.models.utils import update_registered_buffers

from .errors import SsicError
from .model import MODEL_CONFIGS, SSICModel
from .model import entropy as em
from .model.layers import PAD_KEY
from .model.ssic import full_precision
from .model.transforms import keys_at_scale, upsample_parent
from .train import Stopper, save_checkpoint
from .train_data import CropSampler, list_images, random_masks

# Parameter names of the earlier float ChARM nets (SliceNet: Linear, GELU, Linear, GELU, Linear)
# and where they land in the integer nets: a head start for the ŷ-conditioning columns.
_FLOAT_SLICENET_LAYERS = {"net.0": "layers.0", "net.2": "layers.1", "net.4": "layers.2"}


@dataclass
class TuneOptions:
    init: Path                      # weights whose transforms are kept
    data: Path
    out: Path
    model_id: str = "ssic-tiny2p"
    crop: int = 256
    variants: int = 2               # augmented copies (flip / rotation / mask) of every crop
    batch: int = 32
    lr: float = 5e-4
    max_hours: float = 1.0
    decay_fraction: float = 0.15    # last part of the run at lr × 0.1
    checkpoint_minutes: float = 8.0
    seed: int = 0


def port_state(model: SSICModel, source: Path) -> list[str]:
    """Copy every parameter of ``source`` that fits ``model`` (frozen parts and, by name map,
    the float ChARM nets); returns the names of the model's parameters left at their init."""
    try:
        blob = torch.load(source, map_location="cpu", weights_only=True)
        state = blob["state_dict"]
    except (OSError, KeyError, RuntimeError) as exc:
        raise SsicError(f"cannot read weights {source}: {exc}") from None
    renamed = {}
    for key, value in state.items():
        for old, new in _FLOAT_SLICENET_LAYERS.items():
            if key.startswith(("param_nets.", "lrp_nets.")) and f".{old}." in key:
                key = key.replace(f".{old}.", f".{new}.")
        renamed[key] = value.float() if value.is_floating_point() else value
    update_registered_buffers(model.entropy_bottleneck, "entropy_bottleneck",
                              ["_quantized_cdf", "_offset", "_cdf_length"], renamed)
    own = model.state_dict()
    fitting = {k: v for k, v in renamed.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    frozen_missing = [k for k in own if k not in fitting and not model.is_entropy_parameter_path(k)]
    if frozen_missing:
        raise SsicError(f"{source} lacks transform weights this model needs: {frozen_missing[:3]}")
    return [k for k in own if k not in fitting]


# ----- the frozen part, run once -----------------------------------------------------------------
@torch.no_grad()
def latent_set(model: SSICModel, files: list[Path], opt: TuneOptions, rng: np.random.Generator) -> dict:
    """y (fp16), ẑ − median at 1/16 (int16) and keys (int8) of every augmented crop."""
    sampler = CropSampler(files, opt.crop, rng)
    medians = model.entropy_bottleneck.quantiles[:, 0, 1]
    lo = model.entropy_bottleneck._offset.float()
    hi = lo + model.entropy_bottleneck._cdf_length.float() - 2
    ys, zs, ks = [], [], []
    total = len(files) * opt.variants
    for start in range(0, total, 16):
        n = min(16, total - start)
        x = torch.stack([_augment(sampler.batch(1)[0], rng) for _ in range(n)])
        keys, block = random_masks(n, opt.crop, rng, 0.5)
        y = model.g_a(x.permute(0, 2, 3, 1), keys, block).float()
        keys16 = keys_at_scale(keys, block, 16)
        feats = model.h_a.features(y, keys16)
        z_up = torch.zeros(*y.shape[:3], model.config.hyper_latent)
        for g in range(int(keys16.max()) + 1):
            in_g = keys16 == g
            if bool(in_g.any()):
                z = model.h_a.group_latent(feats, in_g).float()
                z_int = torch.round(z - medians).clamp(lo, hi)       # as the coder clips them
                z_up += upsample_parent(z_int) * in_g.unsqueeze(-1)
        ys.append(y.half())
        zs.append(z_up.to(torch.int16))
        ks.append(keys16.to(torch.int8))
    return {"y": torch.cat(ys), "z_up": torch.cat(zs), "keys16": torch.cat(ks)}


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """(3, H, W): one of the 8 flips/rotations."""
    x = torch.rot90(x, int(rng.integers(4)), dims=(1, 2))
    return torch.flip(x, dims=(2,)) if rng.random() < 0.5 else x


@torch.no_grad()
def distortion_weights(model: SSICModel, y: torch.Tensor, keys16: torch.Tensor, noise: float = 0.25) -> torch.Tensor:
    """k_c: pixel MSE (x in [0, 1]) per unit² of latent error in channel c, through the frozen
    g_s: perturb one channel at every position with N(0, noise²) and measure the change."""
    keys = keys16.long()
    base = model.g_s(y, keys, 16)
    k = torch.zeros(y.shape[-1])
    for c in range(y.shape[-1]):
        bumped = y.clone()
        bumped[..., c] += noise * torch.randn_like(bumped[..., c])
        k[c] = ((model.g_s(bumped, keys, 16) - base) ** 2).mean() * (16 * 16) / noise ** 2
    return k


# ----- the loop ------------------------------------------------------------------------------------
def tune_loss(model: SSICModel, batch: dict, quality: torch.Tensor, k: torch.Tensor):
    y = batch["y"].float()
    keys16 = batch["keys16"].long()
    with full_precision(y):
        hyper = model.h_s(batch["z_up"].float(), keys16)
        y_hat, bits_y = model._train_latents(y, hyper, keys16, quality)
    positions = (keys16 != PAD_KEY).flatten(1).sum(1).float()
    bpp = bits_y / (positions * 256)
    mse = (((y - y_hat) ** 2) * k).sum(-1).flatten(1).sum(1) / (positions * 256)
    loss = (em.quality_lambda(quality) * 255.0 ** 2 * mse + bpp).mean()
    return loss, bpp.mean(), mse.mean()


def run(opt: TuneOptions) -> dict:
    torch.set_flush_denormal(True)
    files = list_images(opt.data)
    opt.out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = opt.out / "last.pt", opt.out / "log.jsonl"
    rng = np.random.default_rng(opt.seed)
    torch.manual_seed(opt.seed)
    model = SSICModel(MODEL_CONFIGS[opt.model_id])
    fresh = port_state(model, opt.init)
    model.eval()
    for name, p in model.named_parameters():
        p.requires_grad_(model.is_entropy_parameter_path(name))
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trained, lr=opt.lr)
    step, elapsed = 0, 0.0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed"]
    _log(f"{len(fresh)} parameter tensors start fresh; computing latents of {len(files)} crops × {opt.variants}")
    data = latent_set(model, files, opt, rng)
    k = distortion_weights(model, data["y"][:8].float(), data["keys16"][:8])
    _log(f"{len(data['y'])} training latents; distortion weights k_c in [{k.min():.3g}, {k.max():.3g}]")
    stopper, start, last_ckpt = Stopper(), time.time(), time.time()
    budget = opt.max_hours * 3600
    log = open(log_path, "a")

    def checkpoint():
        save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "step": step, "elapsed": elapsed + time.time() - start,
                                    "model_id": opt.model_id, "init": str(opt.init),
                                    "options": {k: str(v) for k, v in asdict(opt).items()}})

    acc = np.zeros(3)
    while not stopper.stop and elapsed + time.time() - start < budget:
        progress = (elapsed + time.time() - start) / budget
        lr = opt.lr * min(1.0, (step + 1) / 200) * (0.1 if progress > 1 - opt.decay_fraction else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = torch.from_numpy(rng.integers(len(data["y"]), size=opt.batch))
        batch = {name: t[idx] for name, t in data.items()}
        quality = torch.from_numpy(rng.uniform(em.QUALITY_MIN, em.QUALITY_MAX, opt.batch)).float()
        loss, bpp, mse = tune_loss(model, batch, quality, k)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        step += 1
        acc += (loss.item(), bpp.item(), mse.item())
        if step % 100 == 0:
            rec = {"step": step, "time": round(elapsed + time.time() - start, 1), "lr": lr,
                   "loss": round(acc[0] / 100, 4), "bpp_y": round(acc[1] / 100, 4), "mse": acc[2] / 100}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            acc[:] = 0
        if time.time() - last_ckpt > opt.checkpoint_minutes * 60:
            checkpoint()
            last_ckpt = time.time()
    checkpoint()
    log.close()
    _log(f"stopped at step {step}; checkpoint {ckpt_path}")
    return {"step": step}


def export(checkpoint: Path, out_dir: Path) -> Path:
    """Freeze a tuning checkpoint into ``<model id>-<hash8>.pt``; the card names the weights the
    transforms came from and carries their training record."""
    from .weights import export_weights
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise SsicError(f"no checkpoint at {checkpoint}") from None
    model = SSICModel(MODEL_CONFIGS[state["model_id"]])
    port_state(model, Path(state["init"]))              # frozen buffers (entropy tables) as ported
    model.load_state_dict(state["model"])
    source = torch.load(state["init"], map_location="cpu", weights_only=True).get("card", {})
    card = {
        "model_id": state["model_id"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "transforms_from": Path(state["init"]).name,
        "steps": source.get("steps"), "images_seen": source.get("images_seen"),
        "cpu_hours": source.get("cpu_hours"), "training_options": source.get("training_options", {}),
        "parameter_path_tuning": {"steps": state["step"], "wall_hours": round(state["elapsed"] / 3600, 2),
                                  "options": state.get("options", {})},
    }
    return export_weights(model.eval(), state["model_id"], Path(out_dir), card)


def _log(msg: str) -> None:
    import sys
    print(msg, file=sys.stderr, flush=True)

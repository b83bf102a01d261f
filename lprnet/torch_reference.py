"""Reference forward pass of LPRNet_Pytorch in torch (optional dependency; tests and measurements only).

Written functionally from the state dict, loaded with ``torch.load(weights_only=True)`` so that it is
independent of our own parser and of our Keras model. It keeps the original's two quirks: MaxPool3d
applied to a 4-D tensor (pooling over channels) and, with ``batch_context=True``, the global-context
mean square taken over the whole batch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import numpy as np


def load_state_dict(path: Union[str, Path]) -> Dict[str, object]:
    import torch

    return torch.load(str(path), map_location="cpu", weights_only=True)


def torch_logits(sd: Dict[str, object], images_nhwc: np.ndarray, batch_context: bool = False) -> np.ndarray:
    """Pre-processed images [N,24,94,3] -> logits [N,18,68] (the torch model's [N,68,18], transposed)."""
    import torch
    import torch.nn.functional as F

    def conv(x, key, padding=0):
        return F.conv2d(x, sd[f"{key}.weight"], sd[f"{key}.bias"], padding=padding)

    def bn(x, key):
        return F.batch_norm(
            x, sd[f"{key}.running_mean"], sd[f"{key}.running_var"], sd[f"{key}.weight"], sd[f"{key}.bias"],
            training=False, eps=1e-5,
        )

    def block(x, key):
        x = F.relu(conv(x, f"{key}.block.0"))
        x = F.relu(conv(x, f"{key}.block.2", padding=(1, 0)))
        x = F.relu(conv(x, f"{key}.block.4", padding=(0, 1)))
        return conv(x, f"{key}.block.6")

    def run(x):
        x = conv(x, "backbone.0")
        f0 = x = F.relu(bn(x, "backbone.1"))
        x = F.max_pool2d(x, 3, 1)
        f1 = x = F.relu(bn(block(x, "backbone.4"), "backbone.5"))
        x = F.max_pool3d(x, (1, 3, 3), (2, 1, 2))
        x = F.relu(bn(block(x, "backbone.8"), "backbone.9"))
        f2 = x = F.relu(bn(block(x, "backbone.11"), "backbone.12"))
        x = F.max_pool3d(x, (1, 3, 3), (4, 1, 2))
        x = F.relu(bn(conv(x, "backbone.16"), "backbone.17"))
        f3 = F.relu(bn(conv(x, "backbone.20"), "backbone.21"))
        ctx = []
        for i, f in enumerate((f0, f1, f2, f3)):
            if i < 2:
                f = F.avg_pool2d(f, 5, 5)
            elif i == 2:
                f = F.avg_pool2d(f, (4, 10), (4, 2))
            ctx.append(f / torch.mean(f * f))
        x = conv(torch.cat(ctx, 1), "container.0")
        return torch.mean(x, dim=2)  # [N, 68, 18]

    x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2), dtype=np.float32))
    with torch.no_grad():
        if batch_context:
            out = run(x)
        else:
            out = torch.cat([run(x[i : i + 1]) for i in range(x.shape[0])], 0)
    return out.numpy().transpose(0, 2, 1)


def main(argv) -> None:
    """Sequence accuracy of the torch original on a crop folder, per plate and in batches of 100."""
    from absl import flags

    from lprnet.charset import load_charset
    from lprnet.ctc import greedy_decode
    from lprnet.dataset import list_samples, load_crops
    from lprnet.preprocess import normalize

    del argv
    f = flags.FLAGS
    cs = load_charset("cn")
    images, texts = load_crops(list_samples(f.images, cs))
    x = normalize(images)
    sd = load_state_dict(f.pth)

    def accuracy(logits: np.ndarray, truth) -> float:
        return float(np.mean([cs.decode(r.ids) == t for r, t in zip(greedy_decode(logits), truth)]))

    print(f"{len(texts)} plates")
    print(f"torch, one plate per call: sequence accuracy {accuracy(torch_logits(sd, x), texts):.4f}")
    # The original test script: shuffled batches of 100, context over the batch, remainder dropped.
    rng = np.random.default_rng(0)
    runs = []
    for _ in range(f.shuffles):
        order = rng.permutation(len(x))[: len(x) // 100 * 100]
        logits = np.concatenate([torch_logits(sd, x[order[i : i + 100]], True) for i in range(0, len(order), 100)])
        runs.append(accuracy(logits, [texts[i] for i in order]))
    if runs:
        print(f"torch, original protocol (batches of 100, {f.shuffles} shuffles): mean {np.mean(runs):.4f}, "
              f"min {np.min(runs):.4f}, max {np.max(runs):.4f}")


if __name__ == "__main__":
    from absl import app, flags

    from core.cli import guarded

    flags.DEFINE_string("pth", None, "LPRNet_Pytorch weights")
    flags.DEFINE_string("images", None, "folder of Chinese plate crops named by their text")
    flags.DEFINE_integer("shuffles", 10, "random batchings for the original protocol")
    flags.mark_flags_as_required(["pth", "images"])
    app.run(guarded(main))

"""The zoo architectures reproduce PyTorch references layer by layer, from ``.pth`` files.

References written here in torch (no torchvision / lucent dependency):

* InceptionV1 with lucent's topology, explicit paddings, LRN and ``state_dict`` key names
  (``conv2d0_pre_relu_conv.weight``, ``mixed3a_1x1_pre_relu_conv.weight``, ...).
* ResNet-50 and VGG-16 with torchvision's module structure, so their ``state_dict`` keys are
  torchvision's (``layer1.0.downsample.1.running_var``, ``classifier.6.weight``, ...).

Each gets random weights (BatchNorm running statistics randomized too), is saved with
``torch.save`` and loaded by ``lucidax.models.load`` in a subprocess where torch cannot be
imported; every named layer is compared with the torch forward pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

pytestmark = pytest.mark.torch

RTOL = 1e-4

# -- InceptionV1 (lucent layout) ---------------------------------------------------------------

_MIXED = {  # 1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool projection
    "mixed3a": (64, 96, 128, 16, 32, 32),
    "mixed3b": (128, 128, 192, 32, 96, 64),
    "mixed4a": (192, 96, 204, 16, 48, 64),
    "mixed4b": (160, 112, 224, 24, 64, 64),
    "mixed4c": (128, 128, 256, 24, 64, 64),
    "mixed4d": (112, 144, 288, 32, 64, 64),
    "mixed4e": (256, 160, 320, 32, 128, 128),
    "mixed5a": (256, 160, 320, 48, 128, 128),
    "mixed5b": (384, 192, 384, 48, 128, 128),
}


class TorchInceptionV1(nn.Module):
    def __init__(self):
        super().__init__()

        def conv(name, cin, cout, k, stride=1):
            setattr(self, f"{name}_pre_relu_conv", nn.Conv2d(cin, cout, k, stride))

        conv("conv2d0", 3, 64, 7, 2)
        conv("conv2d1", 64, 64, 1)
        conv("conv2d2", 64, 192, 3)
        cin = 192
        for name, (c1, c3r, c3, c5r, c5, cp) in _MIXED.items():
            conv(f"{name}_1x1", cin, c1, 1)
            conv(f"{name}_3x3_bottleneck", cin, c3r, 1)
            conv(f"{name}_5x5_bottleneck", cin, c5r, 1)
            conv(f"{name}_pool_reduce", cin, cp, 1)
            conv(f"{name}_3x3", c3r, c3, 3)
            conv(f"{name}_5x5", c5r, c5, 5)
            cin = c1 + c3 + c5 + cp
        self.softmax2_pre_activation_matmul = nn.Linear(1024, 1008)

    def c(self, name, x, pad=0):
        if pad:
            x = F.pad(x, (pad, pad, pad, pad))
        return getattr(self, f"{name}_pre_relu_conv")(x)

    @staticmethod
    def pool(x, stride):  # lucent's explicit -inf pads
        pad = (0, 1, 0, 1) if stride == 2 else (1, 1, 1, 1)
        return F.max_pool2d(F.pad(x, pad, value=float("-inf")), 3, stride)

    @staticmethod
    def lrn(x):
        return F.local_response_norm(x, size=9, alpha=9.99999974738e-05, beta=0.5, k=1)

    def forward(self, x):
        out = {}
        x = x * 255 - 117
        x = self.conv2d0_pre_relu_conv(F.pad(x, (2, 3, 2, 3)))
        out["conv2d0_pre_relu"] = x
        out["conv2d0"] = x = F.relu(x)
        out["maxpool0"] = x = self.pool(x, 2)
        x = self.c("conv2d1", self.lrn(x))
        out["conv2d1_pre_relu"] = x
        out["conv2d1"] = x = F.relu(x)
        x = self.c("conv2d2", x, 1)
        out["conv2d2_pre_relu"] = x
        out["conv2d2"] = x = F.relu(x)
        out["maxpool1"] = x = self.pool(self.lrn(x), 2)
        for name in _MIXED:
            if name in ("mixed4a", "mixed5a"):
                out["maxpool4" if name == "mixed4a" else "maxpool10"] = x = self.pool(x, 2)
            b1 = self.c(f"{name}_1x1", x)
            b3 = self.c(f"{name}_3x3", F.relu(self.c(f"{name}_3x3_bottleneck", x)), 1)
            b5 = self.c(f"{name}_5x5", F.relu(self.c(f"{name}_5x5_bottleneck", x)), 2)
            bp = self.c(f"{name}_pool_reduce", self.pool(x, 1))
            out[f"{name}_pre_relu"] = torch.cat([b1, b3, b5, bp], 1)
            # lucent concatenates the branches' ReLUs
            out[name] = x = torch.cat([F.relu(b) for b in (b1, b3, b5, bp)], 1)
        x = F.avg_pool2d(x, 7, 1).reshape(-1, 1024)
        out["avgpool0"] = x
        out["softmax2_pre_activation_matmul"] = x = self.softmax2_pre_activation_matmul(x)
        out["softmax2"] = F.softmax(x, dim=1)
        return out


# -- torchvision-compatible ResNet-50 and VGG-16 -------------------------------------------------


class Bottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def pre_relu(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return y + (x if self.downsample is None else self.downsample(x))


class TorchResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, blocks, stride) in enumerate(
            ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), start=1
        ):
            down = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
            )
            layer = [Bottleneck(inplanes, planes, stride, down)]
            layer += [Bottleneck(planes * 4, planes) for _ in range(1, blocks)]
            setattr(self, f"layer{i}", nn.Sequential(*layer))
            inplanes = planes * 4
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        out = {}
        out["conv1"] = x = self.conv1((x - mean) / std)
        out["bn1"] = x = self.bn1(x)
        out["relu"] = x = F.relu(x)
        out["maxpool"] = x = self.maxpool(x)
        for i in range(1, 5):
            for j, block in enumerate(getattr(self, f"layer{i}")):
                out[f"layer{i}.{j}_pre_relu"] = pre = block.pre_relu(x)
                out[f"layer{i}.{j}"] = x = F.relu(pre)
        out["avgpool"] = x = torch.flatten(self.avgpool(x), 1)
        out["fc"] = self.fc(x)
        return out


_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class TorchVGG16(nn.Module):
    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, 1000),
        )

    def forward(self, x):
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        out = {}
        x = (x - mean) / std
        for i, module in enumerate(self.features):
            x = module(x)
            out[f"features.{i}"] = x.clone()  # clone: the ReLUs work in place
        out["avgpool"] = x = self.avgpool(x)
        x = torch.flatten(x, 1)
        for i, module in enumerate(self.classifier):
            x = module(x)
            out[f"classifier.{i}"] = x.clone()
        for dropout in ("classifier.2", "classifier.5"):  # identity in eval: not exposed
            del out[dropout]
        return out


def _randomize(model: nn.Module, seed: int, dense_std: float | None = None) -> nn.Module:
    """He-scaled random weights, random biases and random BatchNorm statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                fan_in = module.weight[0].numel()
                std = dense_std if isinstance(module, nn.Linear) and dense_std else None
                std = std or (2.0 / fan_in) ** 0.5
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * std)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(torch.rand(c, generator=g) + 0.5)
                module.bias.copy_(torch.randn(c, generator=g) * 0.2)
                module.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                module.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
    return model.eval()


# name: (torch reference, input side, dense std)
_CASES = {
    "inceptionv1": (TorchInceptionV1, 224, 0.002),
    "resnet50": (TorchResNet50, 128, None),
    "vgg16": (TorchVGG16, 96, 0.005),
}

_CHILD = textwrap.dedent(
    """
    import json, sys
    sys.modules["torch"] = None  # any `import torch` now fails
    import jax
    import numpy as np
    import lucidax.models as lm

    for job in json.loads(sys.argv[1]):
        model = lm.load(job["name"], weights=job["weights"])
        images = np.load(job["input"])
        acts = jax.jit(lambda p, x: model.apply(p, x))(model.params, images)
        np.savez(job["out"], **{k: np.asarray(acts[k]) for k in model.layer_names})
        del model, acts
    loaded = [m for m, v in sys.modules.items() if v is not None and m.split(".")[0] == "torch"]
    assert not loaded, loaded
    print("torch-free OK")
    """
)


def _reference_and_ours(name: str, tmp) -> tuple[dict, dict]:
    """Torch reference activations of ``name`` and lucidax's (computed torch-free from a
    ``.pth`` file in a subprocess)."""
    seed = list(_CASES).index(name)
    cls, side, dense_std = _CASES[name]
    with torch.device("meta"):  # skip torch's default init: _randomize sets everything
        model = cls()
    model = _randomize(model.to_empty(device="cpu"), seed, dense_std)
    images = np.random.default_rng(seed).random((2, side, side, 3), dtype=np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    ref = {k: (v.permute(0, 2, 3, 1) if v.ndim == 4 else v).numpy() for k, v in out.items()}
    job = {
        "name": name,
        "weights": str(tmp / f"{name}.pth"),
        "input": str(tmp / f"{name}_input.npy"),
        "out": str(tmp / f"{name}_acts.npz"),
    }
    torch.save(model.state_dict(), job["weights"])
    np.save(job["input"], images)
    del model, out
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps([job])],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "torch-free OK" in proc.stdout
    os.remove(job["weights"])  # VGG-16's is 553 MB
    return ref, dict(np.load(job["out"]))


@pytest.fixture(scope="module")
def torch_vs_lucidax(tmp_path_factory):
    """``name -> (torch reference activations, lucidax's)``, each model built on first use.

    Per model rather than all at once: under pytest-xdist each worker runs a module-scoped
    fixture itself, so an all-models fixture was built twice (once per worker, ~100 s of CI).
    """
    tmp = tmp_path_factory.mktemp("zoo_torch")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    cache: dict[str, tuple[dict, dict]] = {}

    def get(name: str) -> tuple[dict, dict]:
        if name not in cache:
            cache[name] = _reference_and_ours(name, tmp)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(_CASES))
def test_every_layer_matches_torch(torch_vs_lucidax, name):
    ref, got = torch_vs_lucidax(name)
    # lucidax exposes exactly the reference's layers, in forward order
    assert list(got) == list(ref), (list(got), list(ref))
    errors = {}
    for layer, r in ref.items():
        g = got[layer]
        assert g.shape == r.shape, (layer, g.shape, r.shape)
        scale = float(np.max(np.abs(r)))
        assert scale > 0, layer
        errors[layer] = float(np.max(np.abs(g - r))) / scale
    worst = max(errors, key=errors.get)
    assert errors[worst] < RTOL, f"{name}: worst layer {worst} rel. error {errors[worst]:.2e}"


def test_layer_helpers_match_torch():
    """Adaptive average pooling (every size to 7) and LRN match torch exactly."""
    import jax.numpy as jnp

    from lucidax.models._layers import adaptive_avg_pool, local_response_norm

    rng = np.random.default_rng(1)
    for h, w in [(2, 3), (7, 7), (9, 13), (20, 8)]:
        x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
        want = F.adaptive_avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 7)
        got = np.asarray(adaptive_avg_pool(jnp.asarray(x), 7))
        np.testing.assert_allclose(got, want.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)
    x = rng.standard_normal((2, 5, 5, 20)).astype(np.float32) * 50
    lrn = nn.LocalResponseNorm(size=9, alpha=9.99999974738e-05, beta=0.5, k=1)
    want = lrn(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    got = np.asarray(local_response_norm(jnp.asarray(x), 9, 9.99999974738e-05, 0.5, 1.0))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(want, x, rtol=1e-2)  # the normalization does something here
    want = F.local_response_norm(torch.from_numpy(x).permute(0, 3, 1, 2), 4, 1e-3, 0.75, 2.0)
    got = np.asarray(local_response_norm(jnp.asarray(x), 4, 1e-3, 0.75, 2.0))
    np.testing.assert_allclose(got, want.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)


def test_checkpoint_mismatch_names_every_key(tmp_path):
    import lucidax.models as lm

    with torch.device("meta"):  # skip torch's default init: _randomize sets everything
        reference = TorchInceptionV1()
    sd = _randomize(reference.to_empty(device="cpu"), 7).state_dict()
    del sd["mixed4a_3x3_pre_relu_conv.bias"]
    sd["mixed6a_1x1_pre_relu_conv.weight"] = torch.zeros(8, 8, 1, 1)
    sd["conv2d1_pre_relu_conv.weight"] = torch.zeros(32, 64, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(lm.CheckpointMismatchError) as info:
        lm.load("inceptionv1", weights=path)
    msg = str(info.value)
    assert "missing" in msg and "mixed4a_3x3_pre_relu_conv.bias" in msg
    assert "unexpected" in msg and "mixed6a_1x1_pre_relu_conv.weight" in msg
    assert "conv2d1_pre_relu_conv.weight" in msg
    assert "(32, 64, 1, 1)" in msg and "(64, 64, 1, 1)" in msg
    # the good keys are not reported
    assert "conv2d0_pre_relu_conv.weight" not in msg

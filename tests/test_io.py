"""Weight files without torch: torch.save (zip + legacy), safetensors, npz; the safe unpickler.

Checkpoints are written with real torch in this process; the torch-free reading is checked in a
subprocess where ``import torch`` is impossible.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
from collections import OrderedDict

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lucidax.models.io import UnsafeCheckpointError, load_params, read_checkpoint, save_params

torch = pytest.importorskip("torch")


def to_numpy(t) -> np.ndarray:
    """Exact numpy twin of a tensor (bfloat16 bit-for-bit as ml_dtypes.bfloat16)."""
    t = t.detach().resolve_conj().resolve_neg()
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).reshape(-1).view(np.uint8)


def assert_same(got: dict, want: dict) -> None:
    """Same keys, dtypes, shapes and bit patterns."""
    assert sorted(got) == sorted(want)
    for key, t in want.items():
        expected = to_numpy(t)
        assert got[key].dtype == expected.dtype, key
        assert got[key].shape == expected.shape, key
        np.testing.assert_array_equal(bits(got[key]), bits(expected), err_msg=key)


def state_dict_zoo() -> OrderedDict:
    """Several dtypes, strided views, shared storages, a Parameter, a conj view, a scalar."""
    g = torch.Generator().manual_seed(0)
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    tagged = torch.randn(3, generator=g)
    tagged.note = "python attribute"  # pickled through torch._tensor._rebuild_from_type_v2
    return OrderedDict(
        {
            "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
            "base": base,
            "base_t": base.t(),  # shares base's storage, transposed strides
            "base_slice": base[2:5, 3:9],  # storage offset + row stride 10
            "base_col": base[:, 4],
            "expanded": torch.arange(3.0).expand(4, 3),  # stride 0
            "half": torch.randn(5, generator=g).half(),
            "bf16": torch.randn(2, 3, generator=g).bfloat16(),
            "bf16_t": torch.randn(3, 2, generator=g).bfloat16().t(),
            "double": torch.randn(2, 2, generator=g, dtype=torch.float64),
            "long": torch.arange(-3, 3, dtype=torch.int64).reshape(2, 3),
            "int": torch.tensor([7, -8, 9], dtype=torch.int32),
            "uint8": torch.arange(250, 256, dtype=torch.uint8),
            "uint16": torch.tensor([1, 60000], dtype=torch.int32).to(torch.uint16),  # v3 path
            "bool": torch.tensor([True, False, True]),
            "complex_conj": torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64).conj(),
            "num_batches_tracked": torch.tensor(42),  # 0-d
            "param": torch.nn.Parameter(torch.randn(2, generator=g)),
            "tagged": tagged,
        }
    )


def small_net_state_dict() -> OrderedDict:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 2)
    )
    return net.state_dict()


def byteswap_to_big(src: str, dst: str) -> None:
    """Rewrite a little-endian torch zip as if written on a big-endian machine."""
    units = {}  # storage key -> size of the byte-swapped unit (a complex swaps per component)

    def note(key, dtype):
        units[key] = dtype.itemsize // 2 if dtype.is_complex else dtype.itemsize

    class Sniffer(pickle.Unpickler):
        def persistent_load(self, pid):
            return pid[2], pid[1]

        def find_class(self, module, name):
            if name == "_rebuild_tensor_v2":
                return lambda storage, *a: note(storage[0], storage[1]._dtype)
            if name == "_rebuild_tensor_v3":
                return lambda storage, *a: note(storage[0], a[5])
            if name == "_rebuild_from_type_v2":
                return lambda func, cls, args, state: func(*args)
            if name.startswith("_rebuild"):
                return lambda *a: None
            return super().find_class(module, name)

    with zipfile.ZipFile(src) as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("/data.pkl"))
        prefix = pkl[: -len("data.pkl")]
        Sniffer(io.BytesIO(zf.read(pkl))).load()
        with zipfile.ZipFile(dst, "w") as out:
            for name in zf.namelist():
                data = zf.read(name)
                if name == f"{prefix}byteorder":
                    data = b"big"
                elif name.startswith(f"{prefix}data/"):
                    unit = units[name.rsplit("/", 1)[1]]
                    data = np.frombuffer(data, f"u{unit}").byteswap().tobytes()
                out.writestr(name, data)


READER = textwrap.dedent(
    """
    import json, pickle, sys
    sys.modules["torch"] = None  # any `import torch` now raises ImportError
    from lucidax.models.io import read_checkpoint
    results = {}
    for path in json.loads(sys.argv[1]):
        try:
            results[path] = read_checkpoint(path)
        except Exception as e:
            results[path] = f"{type(e).__name__}: {e}"
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch" and sys.modules[m])
    with open(sys.argv[2], "wb") as f:
        pickle.dump({"results": results, "torch_modules": loaded}, f)
    """
)


@pytest.fixture(scope="module")
def torch_free_reads(tmp_path_factory):
    """Checkpoints written by torch, read by lucidax in a process that cannot import torch."""
    d = tmp_path_factory.mktemp("ckpt")
    zoo = state_dict_zoo()
    net = small_net_state_dict()
    cases = {}  # path -> expected {key: tensor}

    def save(name, obj, expected, **kw):
        path = str(d / name)
        torch.save(obj, path, **kw)
        cases[path] = expected

    for legacy in (False, True):
        kw = {"_use_new_zipfile_serialization": not legacy}
        tag = "legacy" if legacy else "zip"
        save(f"zoo_{tag}.pth", zoo, zoo, **kw)
        wrapped = {
            "epoch": 3,
            "arch": "small",
            "state_dict": OrderedDict((f"module.{k}", v) for k, v in net.items()),
            "optimizer": {"state": {0: {"exp_avg": torch.ones(2)}}, "lr": 0.1},
        }
        save(f"wrapped_{tag}.pt", wrapped, net, **kw)
        nested = {
            "backbone": {"conv": {"weight": zoo["conv.weight"]}, "scale": 2.0},
            "head.bias": zoo["int"],
            "names": ["a", "b"],
            "step": 7,
        }
        want = {"backbone.conv.weight": zoo["conv.weight"], "head.bias": zoo["int"]}
        save(f"nested_{tag}.bin", nested, want, **kw)
    # The same checkpoint, as written on a big-endian machine; torch itself agrees on it.
    big = str(d / "zoo_big.pth")
    byteswap_to_big(str(d / "zoo_zip.pth"), big)
    torch_big = torch.load(big, weights_only=True)
    assert torch.equal(torch_big["conv.weight"], zoo["conv.weight"])
    cases[big] = zoo
    # An unusual extension: the content decides.
    save("model.weights", net, net)

    out = d / "results.pkl"
    proc = subprocess.run(
        [sys.executable, "-c", READER, json.dumps(list(cases)), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    with open(out, "rb") as f:
        report = pickle.load(f)
    return cases, report


def test_reader_never_imports_torch(torch_free_reads):
    _, report = torch_free_reads
    assert report["torch_modules"] == []


@pytest.mark.parametrize(
    "name",
    [
        "zoo_zip.pth",
        "zoo_legacy.pth",
        "zoo_big.pth",
        "wrapped_zip.pt",
        "wrapped_legacy.pt",
        "nested_zip.bin",
        "nested_legacy.bin",
        "model.weights",
    ],
)
def test_torch_checkpoints_read_exactly_without_torch(torch_free_reads, name):
    cases, report = torch_free_reads
    path = next(p for p in cases if os.path.basename(p) == name)
    got = report["results"][path]
    assert isinstance(got, dict), got
    assert_same(got, cases[path])


def test_views_are_copies_with_their_own_layout(torch_free_reads):
    cases, report = torch_free_reads
    path = next(p for p in cases if p.endswith("zoo_zip.pth"))
    got = report["results"][path]
    np.testing.assert_array_equal(got["base_t"], got["base"].T)
    np.testing.assert_array_equal(got["base_slice"], got["base"][2:5, 3:9])
    assert got["base_slice"].flags.c_contiguous and got["base_slice"].flags.writeable
    assert got["bf16"].dtype == ml_dtypes.bfloat16
    assert got["num_batches_tracked"].shape == () and got["num_batches_tracked"] == 42


def test_wrapper_unwrapping_and_module_prefix(torch_free_reads):
    cases, report = torch_free_reads
    path = next(p for p in cases if p.endswith("wrapped_zip.pt"))
    keys = set(report["results"][path])
    assert "0.weight" in keys and "1.num_batches_tracked" in keys
    assert not any(k.startswith(("module.", "optimizer", "state_dict")) for k in keys)


@settings(max_examples=20, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 4)),
    perm=st.permutations([0, 1, 2]),
    start=st.integers(0, 2),
    step=st.integers(1, 2),
    dtype=st.sampled_from(["float32", "float16", "bfloat16", "int64", "uint8"]),
    legacy=st.booleans(),
)
def test_any_strided_view_reads_back_exactly(
    tmp_path_factory, shape, perm, start, step, dtype, legacy
):
    base = (torch.arange(int(np.prod(shape))) % 97).reshape(shape).to(getattr(torch, dtype))
    view = base.permute(*perm)[start::step]
    buf = tmp_path_factory.mktemp("prop") / "v.pth"
    torch.save({"v": view, "base": base}, buf, _use_new_zipfile_serialization=not legacy)
    assert_same(read_checkpoint(buf), {"v": view, "base": base})


# --- malicious and broken files ------------------------------------------------------------------


class SystemPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class OpenPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import builtins

        return (builtins.open, (str(self.marker), "w"))


class EvalPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import builtins

        return (builtins.eval, (f"open({str(self.marker)!r}, 'w')",))


@pytest.mark.parametrize("payload", [SystemPayload, OpenPayload, EvalPayload])
@pytest.mark.parametrize("fmt", ["zip", "legacy", "plain-pickle"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, payload, fmt):
    marker = tmp_path / "pwned"
    evil = payload(marker)
    path = tmp_path / "evil.pth"
    if fmt == "plain-pickle":
        path.write_bytes(pickle.dumps(evil, protocol=2))
    else:
        # A real state dict with the payload hidden among the tensors.
        obj = {"state_dict": {"w": torch.ones(2), "x": evil}, "epoch": 1}
        torch.save(obj, path, _use_new_zipfile_serialization=fmt == "zip")
    with pytest.raises(UnsafeCheckpointError) as info:
        read_checkpoint(path)
    refused = {SystemPayload: "system", OpenPayload: "open", EvalPayload: "eval"}
    assert refused[payload] in info.value.global_name
    assert info.value.global_name in str(info.value)
    assert str(path) in str(info.value)
    assert isinstance(info.value, pickle.UnpicklingError) and isinstance(info.value, ValueError)
    assert not marker.exists()


def test_the_payload_is_live(tmp_path):
    """Control for the test above: an unrestricted unpickler does run it."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(OpenPayload(marker))).close()
    assert marker.exists()


def test_whole_module_pickle_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "whole.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(UnsafeCheckpointError, match=r"torch\.nn\..*Linear.*state_dict"):
        read_checkpoint(path)


class FakeStorage:
    pass


def crafted_zip(path, *, size, stride, offset=0, numel=4):
    """A zip checkpoint with a hand-made tensor header over a 4-float storage."""
    storage = FakeStorage()

    class T:
        def __reduce__(self):
            return (
                torch._utils._rebuild_tensor_v2,
                (storage, offset, size, stride, False, OrderedDict()),
            )

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is storage:
                return ("storage", torch.FloatStorage, "0", "cpu", numel)
            return None

    buf = io.BytesIO()
    P(buf, protocol=2).dump({"t": T()})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/data/0", np.arange(4, dtype=np.float32).tobytes())


def test_crafted_header_in_bounds_reads(tmp_path):
    crafted_zip(tmp_path / "ok.pth", size=(2, 2), stride=(1, 2), offset=0)
    np.testing.assert_array_equal(read_checkpoint(tmp_path / "ok.pth")["t"], [[0, 2], [1, 3]])


@pytest.mark.parametrize(
    "header",
    [
        {"size": (5,), "stride": (1,)},
        {"size": (2,), "stride": (1,), "offset": 3},
        {"size": (2, 2), "stride": (3, 1)},
        {"size": (2,), "stride": (-1,)},
        {"size": (2,), "stride": (1,), "numel": 8},  # storage claims more than the file holds
    ],
)
def test_out_of_bounds_tensor_header_is_an_error(tmp_path, header):
    crafted_zip(tmp_path / "bad.pth", **header)
    with pytest.raises(ValueError, match="bad.pth"):
        read_checkpoint(tmp_path / "bad.pth")


def write_formats(d):
    t = {"a": torch.randn(3, 4), "b": torch.arange(6, dtype=torch.int64)}
    torch.save(t, d / "m.pth")
    torch.save(t, d / "m_legacy.pth", _use_new_zipfile_serialization=False)
    from safetensors.torch import save_file

    save_file(t, str(d / "m.safetensors"))
    np.savez(d / "m.npz", **{k: v.numpy() for k, v in t.items()})
    return ["m.pth", "m_legacy.pth", "m.safetensors", "m.npz"]


@pytest.mark.parametrize("keep", [0.6, 0.02])
def test_truncated_files_give_a_clear_value_error(tmp_path, keep):
    for name in write_formats(tmp_path):
        data = (tmp_path / name).read_bytes()
        bad = tmp_path / f"cut_{name}"
        bad.write_bytes(data[: int(len(data) * keep)])
        with pytest.raises(ValueError, match="truncated|corrupt") as info:
            read_checkpoint(bad)
        assert str(bad) in str(info.value)
        assert not isinstance(info.value, UnsafeCheckpointError)


def test_corrupt_zip_member_is_a_value_error(tmp_path):
    write_formats(tmp_path)
    data = bytearray((tmp_path / "m.pth").read_bytes())
    i = data.index(b"data.pkl") + 40  # inside the pickle's bytes: the CRC no longer matches
    data[i : i + 8] = b"\xff" * 8
    (tmp_path / "flip.pth").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="flip.pth"):
        read_checkpoint(tmp_path / "flip.pth")


@pytest.mark.parametrize("content", [b"", b"hello world, not weights" * 20, b"\x00" * 64])
def test_unknown_format_lists_supported_ones(tmp_path, content):
    path = tmp_path / "weights.xyz"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        read_checkpoint(path)
    msg = str(info.value)
    assert ".safetensors" in msg and ".npz" in msg and "PyTorch" in msg


def test_plain_pickle_without_magic_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"a": 1, "b": [1.5, "x"]}, protocol=2))
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        read_checkpoint(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        read_checkpoint(tmp_path / "nope.pth")


def test_checkpoint_without_tensors_says_so(tmp_path):
    torch.save({"epoch": 3, "arch": "x"}, tmp_path / "empty.pth")
    with pytest.raises(ValueError, match="no tensors.*epoch"):
        read_checkpoint(tmp_path / "empty.pth")


# --- safetensors / npz / save_params ---------------------------------------------------------


def test_safetensors_from_torch_keeps_dtypes(tmp_path):
    from safetensors.torch import save_file

    t = {
        "w": torch.randn(2, 3),
        "h": torch.randn(4).half(),
        "b": torch.randn(3).bfloat16(),
        "i": torch.arange(5),
        "module.x": torch.ones(1),
    }
    save_file(t, str(tmp_path / "t.safetensors"))
    assert_same(read_checkpoint(tmp_path / "t.safetensors"), t)


def test_npz_and_module_prefix(tmp_path):
    arrays = {"module.a": np.arange(6.0).reshape(2, 3), "module.b": np.array([True, False])}
    np.savez(tmp_path / "a.npz", **arrays)
    got = read_checkpoint(tmp_path / "a.npz")
    assert sorted(got) == ["a", "b"]
    np.testing.assert_array_equal(got["a"], arrays["module.a"])


def test_npz_with_object_arrays_is_refused(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        read_checkpoint(tmp_path / "o.npz")


def sample_params():
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    return {
        "conv1": {
            "kernel": rng.normal(size=(3, 3, 3, 8)).astype(np.float32),
            "bias": jnp.arange(8, dtype=jnp.float32),
        },
        "bn": {"count": np.int32(5), "mask": np.array([True, False])},
        "head": {"kernel": rng.normal(size=(8, 2)).astype(np.float16)},
        "file": {"allow_pickle": np.zeros(2)},  # names that np.savez would trip over
    }


@pytest.mark.parametrize("ext", [".safetensors", ".npz"])
def test_save_load_params_round_trip(tmp_path, ext):
    params = sample_params()
    path = tmp_path / "sub" / f"p{ext}"
    save_params(params, path)
    save_params(params, path)  # overwriting works
    back = load_params(path)
    flat_in = {f"{a}/{b}": np.asarray(v) for a, d in params.items() for b, v in d.items()}
    flat_out = {f"{a}/{b}": v for a, d in back.items() for b, v in d.items()}
    assert sorted(flat_in) == sorted(flat_out)
    for k, v in flat_in.items():
        assert flat_out[k].dtype == v.dtype and flat_out[k].shape == v.shape, k
        np.testing.assert_array_equal(flat_out[k], v)
    assert sorted(read_checkpoint(path)) == sorted(flat_in)  # the on-disk layout: "/" keys
    assert os.listdir(path.parent) == [path.name]  # no temp files left behind


@pytest.mark.parametrize("ext", [".safetensors", ".npz"])
def test_bfloat16_params(tmp_path, ext):
    x = np.array([1.5, -2.25, 3.0], dtype=ml_dtypes.bfloat16)
    save_params({"w": x}, tmp_path / f"b{ext}")
    back = load_params(tmp_path / f"b{ext}")["w"]
    assert back.dtype == (ml_dtypes.bfloat16 if ext == ".safetensors" else np.float32)
    np.testing.assert_array_equal(back.astype(np.float32), x.astype(np.float32))


def test_save_params_errors_leave_nothing_behind(tmp_path):
    with pytest.raises(ValueError, match=r"\.safetensors, \.npz"):
        save_params({"w": np.zeros(2)}, tmp_path / "p.pth")
    with pytest.raises(TypeError, match="nested dict"):
        save_params([np.zeros(2)], tmp_path / "p.npz")
    with pytest.raises(TypeError, match="'bad/x'"):
        save_params({"bad": {"x": np.array([object()])}}, tmp_path / "p.npz")
    assert os.listdir(tmp_path) == []


names = st.text("abcdefghij_0123456789", min_size=1, max_size=6)
leaves = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float16, np.int32, np.uint8, np.bool_, np.float64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
)


@settings(max_examples=15, deadline=None)
@given(
    tree=st.dictionaries(
        names, st.dictionaries(names, leaves, min_size=1, max_size=3), min_size=1, max_size=3
    ),
    ext=st.sampled_from([".safetensors", ".npz"]),
)
def test_load_params_inverts_save_params(tmp_path_factory, tree, ext):
    path = tmp_path_factory.mktemp("rt") / f"p{ext}"
    save_params(tree, path)
    back = load_params(path)
    assert back.keys() == tree.keys()
    for a, sub in tree.items():
        assert back[a].keys() == sub.keys()
        for b, v in sub.items():
            assert back[a][b].dtype == v.dtype
            np.testing.assert_array_equal(back[a][b], v)

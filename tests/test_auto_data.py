"""Data arguments default to ``auto``: the starter data for the starter model, the built-in
photos for other RGB models (lucidax.models.photos.resolve_auto), in the library entry points
and the CLI. The CLI tests stop at the heavy function and check what it received."""

from __future__ import annotations

import copy
import importlib

import pytest

import lucidax.models as lm
from lucidax import cli
from lucidax.models import photos as P

FIRST4 = ("builtin:photos:astronaut", "builtin:photos:chelsea", "builtin:photos:coffee",
          "builtin:photos:rocket")


class _Stop(Exception):
    """Raised by a stub in place of the heavy work (not a user error: main() re-raises it)."""


@pytest.fixture(scope="module")
def starter():
    return lm.load("starter")


@pytest.fixture
def lite(starter, monkeypatch):
    """The starter network registered under ImageNet's name (64 px RGB, no weights to load):
    ``auto`` must follow the name, not the architecture."""
    m = copy.copy(starter)
    m.name = "efficientnet_lite0"
    real = lm.load

    def load(name, weights=None, **kw):
        return m if name == "efficientnet_lite0" else real(name, weights, **kw)

    monkeypatch.setattr(lm, "load", load)
    return m


def _stub(monkeypatch, module, name, seen, *, call_through=False):
    """Replace ``module.name`` by a stub that records its arguments (and optionally what
    the real function returns), then raises :class:`_Stop`."""
    real = getattr(module, name)

    def stub(*args, **kw):
        seen.append((args, kw, real(*args, **kw) if call_through else None))
        raise _Stop

    monkeypatch.setattr(module, name, stub)


# -- the resolver --------------------------------------------------------------------------------
def test_resolve_auto(starter):
    r = P.resolve_auto
    assert r("auto", "starter", "probe") == "builtin:starter"
    assert r("auto", starter, "tcav_random") == r("auto", starter, "tcav_targets") \
        == "builtin:starter"
    assert r("auto", "starter", "attribute") == "builtin:starter:test"
    assert r("auto", "starter", "invert") == ("builtin:starter:test",)
    assert r("auto", "starter", "dissect") == "builtin:starter"
    for use in ("probe", "tcav_random", "tcav_targets", "attribute"):
        assert r("auto", "efficientnet_lite0", use) == "builtin:photos"
    assert r("auto", "efficientnet_lite0", "invert") == FIRST4
    assert len(FIRST4) == P.AUTO_INVERT_PHOTOS
    # explicit values pass through untouched, whatever the model
    for spec in ("builtin:starter:train", "builtin:photos:chelsea", "./auto", "some/folder"):
        assert r(spec, "efficientnet_lite0", "probe") == spec
    assert r("builtin:starter", "efficientnet_lite0", "dissect") == "builtin:starter"
    with pytest.raises(ValueError, match=r"dissection needs concept masks.*"
                                         r"masks/<concept>/<name>\.png"):
        r("auto", "efficientnet_lite0", "dissect")
    with pytest.raises(ValueError, match="Did you mean 'dissect'.*Valid auto uses: probe"):
        r("auto", "starter", "dissec")
    grey = copy.copy(starter)
    grey.name = "mnist_net"
    grey.input_spec = type(starter.input_spec)(side=28, channels=1)
    with pytest.raises(ValueError, match="1-channel input: give its data explicitly"):
        r("auto", grey, "probe")


def test_help_says_auto():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    flags = {"probe": "data", "tcav": ("random", "targets"), "attribute": "images",
             "invert": "images", "dissect": "data"}
    for cmd, dests in flags.items():
        for dest in (dests,) if isinstance(dests, str) else dests:
            (act,) = [a for a in sub[cmd]._actions if a.dest == dest]
            assert act.default == "auto" and "auto (" in act.help
            assert act.help.endswith("(default: auto)"), (cmd, dest)
    inv = next(a for a in sub["invert"]._actions if a.dest == "images").help
    from lucidax.visualize._invert import STARTER_IMAGES

    assert ", ".join(s.removeprefix("builtin:photos:") for s in FIRST4) in inv
    assert f"{STARTER_IMAGES} builtin:starter:test images" in inv


# -- one CLI run per command, stopped before the heavy work ------------------------------------
def test_cli_probe_auto(lite, monkeypatch):
    run = importlib.import_module("lucidax.probes._probe_job")

    seen: list = []
    _stub(monkeypatch, run, "load_data", seen)
    # (starter data has several label families: without --target the CLI stops before
    # making the data)
    for argv, want in ((["--model", "efficientnet_lite0"], "builtin:photos"),
                       (["--target", "digit"], "builtin:starter"),
                       (["--model", "efficientnet_lite0", "--data", "builtin:starter:train",
                         "--target", "digit"], "builtin:starter:train")):
        seen.clear()
        with pytest.raises(_Stop):
            cli.main(["probe", *argv])
        assert seen[0][0] == (want,)


def test_cli_tcav_auto(lite, monkeypatch):
    tcav = importlib.import_module("lucidax.probes._tcav_job")

    seen: list = []
    _stub(monkeypatch, tcav, "tcav", seen)
    base = ["tcav", "--concepts", "builtin:photos:grass", "--class", "3", "--runs", "2"]
    with pytest.raises(_Stop):
        cli.main([*base, "--model", "efficientnet_lite0"])
    r_set, t_set = seen[0][0][3:5]
    every = ",".join(P.available_sources())
    others = ",".join(s for s in P.available_sources() if s != "grass")
    # random sets: every photo but the concept's own; targets: every photo
    assert r_set.key.startswith("photos-") and f":{others}:" in r_set.key
    assert t_set.key.startswith("photos-") and f":{every}:100:64:3:" in t_set.key
    seen.clear()
    with pytest.raises(_Stop):
        cli.main(base)  # starter: random starter images, starter digits of the class
    r_set, t_set = seen[0][0][3:5]
    assert r_set.key.startswith("starter-") and ":test:" in r_set.key
    assert t_set.name == "digit 3" and "digit=3" in t_set.key


def test_cli_attribute_auto(lite, monkeypatch):
    run = importlib.import_module("lucidax.attribute._job")

    seen: list = []
    _stub(monkeypatch, run, "load_images", seen, call_through=True)
    with pytest.raises(_Stop):
        cli.main(["attribute", "--model", "efficientnet_lite0", "--n", "3"])
    args, _, src = seen[0]
    assert args[0] == "auto"  # resolved inside load_images, which knows the model
    assert src.description == "builtin:photos (n=3, seed=0)"
    assert src.images.shape == (3, 64, 64, 3) and src.labels is None


def test_cli_invert_auto(lite, monkeypatch):
    from lucidax.visualize import _invert as inv

    seen: list = []
    _stub(monkeypatch, inv, "invert", seen)
    with pytest.raises(_Stop):
        cli.main(["invert", "--model", "efficientnet_lite0", "--layers", "conv1"])
    assert seen[0][0][2].shape == (4, 64, 64, 3)  # the four whole photos, at the model's side
    read: list = []
    _stub(monkeypatch, inv, "_read_images", read)
    with pytest.raises(_Stop):
        cli.main(["invert", "--layers", "conv1"])
    with pytest.raises(_Stop):
        cli.main(["invert", "--model", "efficientnet_lite0", "--layers", "conv1"])
    assert [list(a[0]) for a, _, _ in read] == [["builtin:starter:test"], list(FIRST4)]
    with pytest.raises(ValueError, match="'auto' stands alone"):
        inv.run_invert(inv.InvertJob(lite, layers="conv1", images=["auto", "x.png"]))


def test_cli_dissect_auto(monkeypatch, capsys):
    dis = importlib.import_module("lucidax.probes._dissect_job")

    def no_load(*a, **k):
        raise AssertionError("the model is not loaded before the data is known")

    real = lm.load
    monkeypatch.setattr(lm, "load", no_load)
    assert cli.main(["dissect", "--model", "efficientnet_lite0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lucidax dissect: error: dissection needs concept masks")
    assert len(err.strip().splitlines()) == 1 and "images/<name>.png" in err
    monkeypatch.setattr(lm, "load", real)
    seen: list = []
    _stub(monkeypatch, dis, "_source", seen)
    with pytest.raises(_Stop):
        cli.main(["dissect"])
    assert seen[0][0][0] == "builtin:starter"

"""The public nets, rebuilt: each matches its README's torchsummary table layer by layer, and trains here."""

import contextlib
import io
import re

import pytest
import torch
from conftest import ROOT

from lab.reference import REFERENCE, SOURCES
from model import count_parameters
from train import spec
from utils import print_summary

TABLES = ROOT.parent / "shared" / "reference"
ROW = re.compile(r"^\s*(\w+)-\d+\s+\[([-\d, ]+)\]\s+([\d,]+)\s*$", re.M)
SHOWN = {"Conv2d", "BatchNorm2d", "Linear", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"}  # not ReLU, Dropout


def layers(summary: str) -> list[tuple[str, str, int]]:
    """(layer type, output shape, parameters) of each shown row of a torchsummary table."""
    rows = [(kind, shape.replace(" ", ""), int(n.replace(",", ""))) for kind, shape, n in ROW.findall(summary)]
    return [row for row in rows if row[0] in SHOWN]


@pytest.mark.parametrize("name", list(REFERENCE))
def test_each_public_net_matches_its_readmes_summary_table(name):
    paths = sorted(TABLES.glob(f"{SOURCES[name]}_*.txt"))
    if not paths:
        pytest.skip(f"no reference README {SOURCES[name]}_*.txt in {TABLES}")
    theirs = layers(paths[0].read_text())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_summary(REFERENCE[name]())
    assert layers(out.getvalue()) == theirs
    assert count_parameters(REFERENCE[name]()) == sum(n for _, _, n in theirs) == int(name.removeprefix("ref_"))


@pytest.mark.parametrize("name", list(REFERENCE))
def test_each_public_net_is_under_its_budget_and_has_a_recipe(name):
    net = spec(name)
    assert count_parameters(net.build()) < net.budget and net.recipe.batch_size == 128
    assert net.build()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)

import pytest
import torch

from model import MODELS, count_parameters, get_model


@pytest.mark.parametrize("name", list(MODELS))
def test_output_is_ten_logits_per_image(name):
    model = get_model(name).eval()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("name", [n for n, spec in MODELS.items() if spec.budget])
def test_parameter_count_is_under_budget(name):
    assert count_parameters(get_model(name)) < MODELS[name].budget


def test_baseline_matches_the_reference_parameter_count():
    assert count_parameters(get_model("baseline")) == 593_200


@pytest.mark.parametrize("name", [n for n, spec in MODELS.items() if spec.budget])
def test_budgeted_models_have_no_fully_connected_layer(name):
    kinds = {type(m) for m in get_model(name).modules()}
    assert torch.nn.Linear not in kinds
    assert {torch.nn.BatchNorm2d, torch.nn.Dropout, torch.nn.AdaptiveAvgPool2d} <= kinds


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(KeyError) as err:
        get_model("resnet")
    assert "resnet" in str(err.value) and all(name in str(err.value) for name in MODELS)

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


def test_receptive_field_table_matches_the_hand_computation_for_s7_8k():
    """Worked by hand: n_out = n_in - k + 1 for unpadded convs, rf += (k - 1) * jump, jump *= stride."""
    from utils import receptive_field_table

    rows = receptive_field_table(get_model("s7_8k"))
    got = [(r.size, r.channels, r.rf, r.jump) for r in rows]
    assert got == [
        (26, 8, 3, 1),  # conv 3x3: rf 1 + 2*1
        (24, 16, 5, 1),  # conv 3x3: rf 3 + 2*1
        (12, 16, 6, 2),  # max-pool 2x2: rf 5 + 1*1, jump doubles
        (12, 8, 6, 2),  # 1x1 conv: nothing changes but channels
        (10, 16, 10, 2),  # conv 3x3: rf 6 + 2*2
        (8, 16, 14, 2),
        (6, 16, 18, 2),
        (6, 10, 18, 2),  # 1x1 head
        (1, 10, 28, 12),  # GAP over 6x6: rf 18 + 5*2 = 28, the whole image
    ]
    assert rows[0].params == 8 * 9 + 2 * 8  # weights + BatchNorm scale and shift
    assert sum(r.params for r in rows) == count_parameters(get_model("s7_8k"))


def test_every_model_has_a_training_recipe():
    from utils import RECIPES

    assert set(RECIPES) == set(MODELS)

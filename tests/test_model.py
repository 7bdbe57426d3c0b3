import pytest
import torch
from conftest import build

from lab import report
from lab.nets import COURSE_LAYERS, SEARCHED, Net, Repeat, Residual
from model import MODELS, count_parameters
from train import spec
from utils import UserError, load_weights, receptive_field_table

ALL = [*MODELS, *SEARCHED]
BUDGETED = [n for n in ALL if spec(n).budget]


@pytest.mark.parametrize("name", ALL)
def test_output_is_ten_logits_per_image(name):
    model = build(name).eval()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("name", BUDGETED)
def test_parameter_count_is_under_budget(name):
    assert count_parameters(build(name)) < spec(name).budget


def test_every_course_net_stands_in_its_budgets_row_of_the_course_table():
    """A course budget lists the net that answers it first, then the ones tried before: none is left out."""
    for name, net in MODELS.items():
        if net.budget:
            assert name in report.COURSE[net.budget], name


@pytest.mark.parametrize("name", list(COURSE_LAYERS))
def test_each_course_class_is_the_layer_string_net_it_replaces(name, tmp_path):
    """Same parameter count, and with the old net's saved weights the same output on a fixed input."""
    old, new = COURSE_LAYERS[name](), MODELS[name]()
    assert count_parameters(new) == count_parameters(old) and new.dropout.p == old.dropout  # as its run drew it
    torch.manual_seed(1)
    for module in old.modules():  # weights and BatchNorm statistics unlike any default
        for tensor in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
            if tensor.is_floating_point():
                tensor.data.uniform_(0.5, 1.5)
    from safetensors.torch import save_file

    save_file(old.state_dict(), tmp_path / "old.safetensors")
    load_weights(new, tmp_path / "old.safetensors")
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(new.eval()(x), old.eval()(x))
    with pytest.raises(UserError, match="does not hold this net's weights"):
        load_weights(MODELS["s7_10k" if name == "s6" else "s6"](), tmp_path / "old.safetensors")


@pytest.mark.parametrize("name", list(COURSE_LAYERS))
def test_a_course_class_draws_the_same_initial_weights_as_the_net_it_replaces(name):
    """A seed gives the same start either way, so the published runs of the old nets are runs of the classes."""
    torch.manual_seed(0)
    old = list(COURSE_LAYERS[name]().state_dict().values())
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(old, MODELS[name]().state_dict().values(), strict=True))


def test_baseline_matches_the_reference_parameter_count():
    assert count_parameters(build("baseline")) == 593_200


@pytest.mark.parametrize("name", BUDGETED)
def test_budgeted_models_average_the_image_and_a_linear_layer_only_follows_that(name):
    """GAP, not dense layers over the feature maps; the course nets have none at all, and a lab net's dense
    head (the `h16` token, a lever of the public nets) works on the pooled vector only."""
    modules = list(build(name).modules())
    kinds = {type(m) for m in modules}
    assert {torch.nn.BatchNorm2d, torch.nn.AdaptiveAvgPool2d} <= kinds
    pooled = next(i for i, m in enumerate(modules) if isinstance(m, torch.nn.AdaptiveAvgPool2d))
    assert not any(isinstance(m, torch.nn.Linear) for m in modules[:pooled])
    if name in MODELS:
        assert torch.nn.Linear not in kinds


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UserError) as err:
        build("resnet")
    assert "resnet" in str(err.value) and all(name in str(err.value) for name in MODELS)


def test_builder_counts_parameters_as_worked_by_hand():
    """3x3 conv: 9 * in * out weights, + 2 * out for BatchNorm; 1x1: in * out + 2 * out; head: 10 * in."""
    net = Net("4p M 8 t6", dropout=0.1)
    assert count_parameters(net) == (9 * 1 * 4 + 8) + (9 * 4 * 8 + 16) + (8 * 6 + 12) + 6 * 10


def test_builder_places_dropout_after_the_3x3_convs_past_the_first_pool_only():
    net = Net("8 M t8 8 8", dropout=0.05)
    blocks = [b for b in net if isinstance(b, torch.nn.Sequential)][:-1]  # conv blocks, not the head
    has_dropout = [any(isinstance(m, torch.nn.Dropout) for m in b) for b in blocks]
    assert has_dropout == [False, False, True, True]
    assert not any(isinstance(m, torch.nn.Dropout) for m in Net("8 M 8", dropout=0.0).modules())


@pytest.mark.parametrize("layers", ["8x", "p8", "M2", "t", "0", "8 M 8 M 8 M 8 8"])
def test_builder_rejects_bad_layer_strings(layers):
    with pytest.raises(ValueError, match="bad layer|shrinks the image"):
        Net(layers)


def test_receptive_field_of_an_unpadded_net_matches_the_hand_computation():
    """Worked by hand: n_out = n_in - k + 1 for unpadded convs, rf += (k - 1) * jump, jump *= stride."""
    net = Net("8 16 M t8 16 16 16", dropout=0.03)
    rows = receptive_field_table(net)
    assert [(r.size, r.channels, r.rf, r.jump) for r in rows] == [
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
    assert sum(r.params for r in rows) == count_parameters(net)


def test_receptive_field_of_a_padded_two_pool_net_matches_the_hand_computation():
    """Padding keeps the side but not the receptive field: a padded 3x3 conv still adds (k - 1) * jump."""
    rows = receptive_field_table(Net("4p 4p M 8p 8p M 8 8"))
    assert [(r.size, r.rf, r.jump) for r in rows] == [
        (28, 3, 1),
        (28, 5, 1),
        (14, 6, 2),  # pool
        (14, 10, 2),
        (14, 14, 2),
        (7, 16, 4),  # pool
        (5, 24, 4),  # unpadded at 7 px: 7 -> 5 -> 3
        (3, 32, 4),
        (3, 32, 4),  # 1x1 head
        (1, 40, 12),  # GAP over 3x3: rf 32 + 2*4
    ]


@pytest.mark.parametrize("name", BUDGETED)
def test_every_budgeted_net_sees_most_of_the_digit_box_before_pooling_it_away(name):
    """The last 3x3 conv sees at least 18 of the 20 px MNIST digits are centred in; GAP then takes in all 28."""
    rows = receptive_field_table(build(name))
    assert [r for r in rows if r.layer.startswith("conv 3x3")][-1].rf >= 18
    assert rows[-1].rf >= 28 and rows[-1].size == 1


def test_every_model_has_a_training_recipe():
    from lab.recipes import RECIPES as LAB
    from lab.reference import REFERENCE
    from train import RECIPES

    assert set(RECIPES) == set(MODELS) and set(LAB) == {*SEARCHED, *REFERENCE}


def test_separable_residual_and_shared_blocks_count_parameters_as_worked_by_hand():
    """8d from 8 maps: 9 * 8 depthwise + 8 * 8 pointwise + 2 * 8 BatchNorm; a residual adds none; x2 shares."""
    separable = 9 * 8 + 8 * 8 + 16
    plain = 9 * 8 * 8 + 16
    stem = (9 * 1 * 8 + 16) + 8 * 10  # first conv + head
    assert count_parameters(Net("8p 8d")) == stem + separable
    assert count_parameters(Net("8p [ 8d 8d ]")) == stem + 2 * separable
    assert count_parameters(Net("8p 8px3")) == stem + plain
    assert count_parameters(Net("8p [ 8p 8d ]x2")) == stem + plain + separable


def test_residual_adds_its_input_and_a_repeat_reuses_one_block():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 14, 14)
    net = Net("8p [ 8p ]x3").eval()
    shared = net[1]
    assert isinstance(shared, Repeat) and shared.times == 3 and isinstance(shared.block, Residual)
    body = shared.block.body
    y = x
    for _ in range(3):
        y = y + body(y)
    assert torch.equal(shared(x), y)
    assert net(torch.randn(4, 1, 28, 28)).shape == (4, 10)


def test_receptive_field_counts_each_application_of_a_shared_block():
    """8px2 at 14 px after one pool: two padded 3x3 convs, each adding 2 * jump = 4 px, one set of weights."""
    rows = receptive_field_table(Net("4p M 4px2 t8 8d"))
    assert [(r.layer, r.rf, r.params) for r in rows[:6]] == [
        ("conv 3x3, pad 1, 1->4", 3, 9 * 4 + 8),
        ("max-pool 2x2", 4, 0),
        ("conv 3x3, pad 1, 4->4", 8, 9 * 4 * 4 + 8),
        ("conv 3x3, pad 1, 4->4", 12, 0),  # the same weights again
        ("conv 1x1, 4->8", 12, 4 * 8 + 16),
        ("conv 3x3 depthwise, pad 1, 8->8", 16, 9 * 8),
    ]
    assert sum(r.params for r in receptive_field_table(Net("4p M 4px2 t8 8d"))) == count_parameters(
        Net("4p M 4px2 t8 8d")
    )


@pytest.mark.parametrize(
    "layers, message",
    [
        ("8p [ 8p", "leaves a residual group open"),
        ("8p ] 8p", "closes a residual group it never opened"),
        ("8p [ 16p ]", "must keep its maps and side"),
        ("8p [ 8p M ]", "must keep its maps and side"),
        ("4p 8px2", "repeats a block from 4 maps to 8"),
        ("8p Mx2", "bad layer"),
    ],
)
def test_builder_rejects_bad_groups_and_repeats(layers, message):
    with pytest.raises(ValueError, match=message):
        Net(layers)

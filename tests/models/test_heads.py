"""``tlcli.models.heads``: which module is a network's head (torchvision, timm and the baselines,
built without weights), which parameters lie within it, and replacing it with a new one."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision import models

from tlcli.core.errors import ModelError
from tlcli.models.baselines import MLP, SimpleCNN
from tlcli.models.heads import find_head, head_dropout, head_names, preceding_dropout, replace_head, within_head

pytestmark = pytest.mark.usefixtures("_one_thread")


def _torchvision(arch: str) -> nn.Module:
    # On the meta device: the structure alone, without allocating VGG's 130 million weights.
    with torch.device("meta"):
        return models.get_model(arch, weights=None)


@pytest.mark.parametrize("arch, head", [
    ("resnet18", "fc"),
    # VGG and MobileNetV3 keep their hidden classifier layers: only the last Linear is the head.
    ("vgg11", "classifier.6"),
    ("mobilenet_v3_small", "classifier.3"),
    ("efficientnet_b0", "classifier.1"),
    # SqueezeNet has no Linear at all; its logits come from a 1x1 convolution.
    ("squeezenet1_1", "classifier.1"),
])
def test_torchvision_heads_are_the_last_linear_or_squeezenets_final_convolution(arch, head):
    model = _torchvision(arch)
    assert find_head(model) == head
    produced = model.get_submodule(head)
    assert (produced.out_features if isinstance(produced, nn.Linear) else produced.out_channels) == 1000


def test_baseline_heads_are_their_last_linear():
    assert find_head(MLP(10, input_size=8)) == "layers.6"
    assert find_head(SimpleCNN(10)) == "classifier.3"
    assert find_head(SimpleCNN(10, dropout=0.5)) == "classifier.4"


def test_timm_models_name_their_own_head():
    timm = pytest.importorskip("timm")
    assert find_head(timm.create_model("test_resnet", pretrained=False)) == "fc"
    # LeViT's two heads (class and distillation) are each a NormLinear around a Linear.
    assert find_head(timm.create_model("levit_128s", pretrained=False)) == "head,head_dist"


def test_a_network_without_any_head_is_a_model_error():
    trunk = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    with pytest.raises(ModelError, match="cannot find a classification head in Sequential"):
        find_head(trunk)


def test_within_head_matches_whole_names_not_prefixes():
    assert within_head("fc", "fc")
    assert within_head("fc.weight", "fc")
    assert within_head("classifier.1.bias", "classifier.1")
    # "fc2" and "classifier.10" only start with the head's text; they are other modules.
    assert not within_head("fc2.weight", "fc")
    assert not within_head("classifier.10.weight", "classifier.1")
    assert not within_head("layer4.0.conv1.weight", "fc")


def test_within_head_recognises_either_of_two_heads():
    assert head_names("head,head_dist") == ["head", "head_dist"]
    assert within_head("head.linear.weight", "head,head_dist")
    assert within_head("head_dist.linear.bias", "head,head_dist")
    assert not within_head("blocks.0.weight", "head,head_dist")


def test_replacing_a_linear_head_keeps_its_inputs_and_gives_the_new_class_count():
    model = models.resnet18(weights=None)
    old = model.fc
    name = replace_head(model, "fc", 3, dropout=None)
    assert name == "fc"
    assert model.fc is not old and model.fc.in_features == 512 and model.fc.out_features == 3
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


def test_dropout_is_added_in_front_of_a_head_that_had_none():
    model = models.resnet18(weights=None)
    name = replace_head(model, "fc", 4, dropout=0.3)
    assert name == "fc.1"
    assert isinstance(model.fc[0], nn.Dropout) and model.fc[0].p == 0.3
    assert model.get_submodule(name).out_features == 4
    assert head_dropout(model, name) == 0.3


def test_an_architectures_own_dropout_is_kept_or_set_but_never_doubled():
    model = models.mobilenet_v3_small(weights=None)
    assert head_dropout(model, "classifier.3") == 0.2
    assert replace_head(model, "classifier.3", 5, dropout=None) == "classifier.3"
    assert preceding_dropout(model, "classifier.3").p == 0.2
    assert replace_head(model, "classifier.3", 5, dropout=0.6) == "classifier.3"
    assert head_dropout(model, "classifier.3") == 0.6
    assert sum(isinstance(m, nn.Dropout) for m in model.classifier) == 1


def test_squeezenets_convolution_head_is_replaced_by_a_1x1_convolution():
    model = models.squeezenet1_1(weights=None)
    replace_head(model, "classifier.1", 7, dropout=None)
    head = model.classifier[1]
    assert isinstance(head, nn.Conv2d) and head.kernel_size == (1, 1)
    assert head.in_channels == 512 and head.out_channels == 7
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 7)


def test_a_timm_model_with_two_heads_gets_both_replaced():
    timm = pytest.importorskip("timm")
    # At 64x64 instead of 224x224: the same heads, a tenth of the forward pass.
    model = timm.create_model("levit_128s", pretrained=False, img_size=64)
    name = replace_head(model, "head,head_dist", 6, dropout=None)
    assert name == "head,head_dist"
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 6)
    assert model.head.linear.out_features == model.head_dist.linear.out_features == 6


def test_fewer_than_two_classes_is_a_model_error():
    with pytest.raises(ModelError, match="at least 2"):
        replace_head(MLP(10, input_size=8), "layers.6", 1, dropout=None)


def test_a_timm_model_built_without_classes_has_no_head_rather_than_a_hidden_layer():
    import timm

    with pytest.raises(ModelError, match="no classification head.*--num-classes"):
        find_head(timm.create_model("test_vit", num_classes=0))
    assert find_head(timm.create_model("test_vit", num_classes=3)) == "head"

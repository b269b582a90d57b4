"""The model registry: every family gets a working head of the right size."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from tlcli.core.config import ModelConfig
from tlcli.core.errors import ModelError
from tlcli.models.freeze import count_parameters
from tlcli.models.registry import build_model, check_arch, list_architectures, torchvision_architectures

from tests.helpers import place_timm_weights, place_torchvision_weights


def _build(arch: str, num_classes: int | None = 7, **overrides):
    return build_model(ModelConfig(arch=arch, **overrides), num_classes=num_classes, load_weights=False)


# One architecture per head layout: fc, classifier Sequential, classifier Linear (densenet),
# heads.head (vit), head (swin), hidden classifier layers (vgg, mobilenet_v3), 1x1 conv (squeezenet),
# auxiliary heads (googlenet, inception_v3), trunk_output (regnet).
FAMILIES = [
    ("resnet18", "fc"),
    ("efficientnet_b0", "classifier.1"),
    ("densenet121", "classifier"),
    ("mobilenet_v3_small", "classifier.3"),
    ("vgg11", "classifier.6"),
    ("squeezenet1_1", "classifier.1"),
    ("convnext_tiny", "classifier.2"),
    ("regnet_x_400mf", "fc"),
    ("shufflenet_v2_x0_5", "fc"),
    ("googlenet", "fc"),
    ("vit_b_32", "heads.head"),
    ("swin_t", "head"),
]


@pytest.mark.parametrize("arch,head", FAMILIES)
def test_every_family_gets_a_new_head_that_produces_num_classes_logits(arch, head):
    built = _build(arch, 7, weights="none")
    assert built.head_name == head
    assert built.num_classes == 7
    size = 299 if arch == "inception_v3" else 224 if arch.startswith(("vit", "swin")) else 64
    built.model.eval()
    with torch.no_grad():
        logits = built.model(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 7)


def test_inception_v3_drops_its_auxiliary_head_and_returns_plain_logits():
    built = _build("inception_v3", 4, weights="none")
    assert built.model.AuxLogits is None
    built.model.train()
    logits = built.model(torch.randn(2, 3, 299, 299))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 4)


def test_efficientnet_head_matches_the_pokemon_report():
    built = _build("efficientnet_b0", 150)
    head = built.model.classifier
    assert isinstance(head[0], nn.Dropout) and head[0].p == pytest.approx(0.2)
    assert isinstance(head[1], nn.Linear) and (head[1].in_features, head[1].out_features) == (1280, 150)
    assert built.dropout == pytest.approx(0.2)


def test_dropout_option_sets_existing_dropout_and_adds_one_where_there_is_none():
    effnet = _build("efficientnet_b0", 5, dropout=0.3)
    assert effnet.model.classifier[0].p == pytest.approx(0.3)
    resnet = _build("resnet18", 5, dropout=0.4, weights="none")
    assert resnet.head_name == "fc.1"
    assert isinstance(resnet.model.fc[0], nn.Dropout) and resnet.model.fc[0].p == pytest.approx(0.4)
    assert resnet.dropout == pytest.approx(0.4)


def test_no_num_classes_keeps_the_imagenet_head():
    built = _build("resnet18", None)
    assert built.model.fc.out_features == 1000 and built.num_classes == 1000


def test_simple_cnn_is_exactly_the_cifar10_reports_network():
    built = _build("simple_cnn", 10)
    assert count_parameters(built.model).total == 2_122_186
    assert built.preprocess.input_size == 32 and built.preprocess.channels == 3
    assert built.model(torch.randn(3, 3, 32, 32)).shape == (3, 10)


def test_mlp_is_the_mnist_reports_network_and_follows_hidden_sizes():
    built = _build("mlp", 10)
    layers = [m for m in built.model.modules() if isinstance(m, (nn.Linear, nn.Dropout))]
    assert [(m.in_features, m.out_features) if isinstance(m, nn.Linear) else m.p for m in layers] == [
        (784, 128), 0.2, (128, 64), (64, 10)
    ]
    wide = _build("mlp", 3, hidden=(32, 16, 8), input_size=8)
    linears = [m for m in wide.model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 16), (16, 8), (8, 3)]
    assert wide.model(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_baselines_default_to_no_weights_and_refuse_imagenet():
    assert _build("simple_cnn").weights == "none"
    with pytest.raises(ModelError, match="no pretrained weights"):
        _build("mlp", weights="imagenet")


def test_unknown_architecture_lists_the_closest_names():
    with pytest.raises(ModelError) as caught:
        check_arch("resnet19")
    assert "resnet18" in str(caught.value)
    with pytest.raises(ModelError, match="timm:resnet18"):
        check_arch("timm:resnet18x")


def test_head_of_one_class_is_rejected():
    with pytest.raises(ModelError, match="at least 2"):
        _build("resnet18", 1, weights="none")


def test_preprocess_comes_from_the_weights_metadata():
    effnet = _build("efficientnet_b0").preprocess
    assert (effnet.input_size, effnet.resize_size, effnet.interpolation) == (224, 256, "bicubic")
    vit = _build("vit_b_16").preprocess
    assert vit.input_size == 224 and vit.mean == pytest.approx((0.485, 0.456, 0.406))
    resized = _build("resnet18", input_size=112).preprocess
    assert (resized.input_size, resized.resize_size) == (112, 128)


def test_registry_lists_every_torchvision_classifier_and_the_baselines():
    names = {info.name for info in list_architectures()}
    assert {"simple_cnn", "mlp", "resnet18", "efficientnet_b0", "vit_b_16", "swin_t", "convnext_tiny"} <= names
    assert set(torchvision_architectures()) <= names
    resnets = list_architectures("resnet*")
    assert resnets and all(info.name.startswith("resnet") for info in resnets)
    assert next(i for i in resnets if i.name == "resnet18").params == 11_689_512


def test_timm_models_are_built_and_listed():
    pytest.importorskip("timm")
    built = _build("timm:test_resnet", 6, weights="none", dropout=0.3)
    assert built.model(torch.randn(1, 3, 64, 64)).shape == (1, 6)
    assert built.dropout == pytest.approx(0.3) and built.model.drop_rate == pytest.approx(0.3)
    assert built.preprocess.input_size == 160
    assert any(info.name == "timm:test_resnet" for info in list_architectures("timm:test_res*"))


def test_a_two_headed_timm_model_gets_both_heads_through_timm_and_trains_both_in_phase_1(tiny, tmp_path):
    pytest.importorskip("timm")
    import tlcli
    from tlcli.run.checkpoint import load_checkpoint

    arch = "timm:deit_tiny_distilled_patch16_224"  # its logits average head and head_dist
    built = _build(arch, 3, weights="none", freeze="backbone")
    assert built.head_name == "head,head_dist"
    assert [built.model.get_submodule(name).out_features for name in ("head", "head_dist")] == [3, 3]
    trainable = {name for name, p in built.model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias", "head_dist.weight", "head_dist.bias"}
    levit = _build("timm:levit_128s", 3, weights="none", freeze="backbone")  # two heads, each BatchNorm + Linear
    assert levit.head_name == "head,head_dist" and levit.model.head_dist.linear.out_features == 3
    assert {name.split(".")[0] for name, p in levit.model.named_parameters() if p.requires_grad} == {"head", "head_dist"}

    run = tmp_path / "run"
    options = dict(arch=arch, weights="none", freeze="backbone", val_split=0.34, test_split=0.0, workers=0, progress=False)
    with pytest.warns(UserWarning, match="random features"):
        tlcli.train(str(tiny), epochs=1, out=str(run), **options)
    before = load_checkpoint(run / "last.pt")["state_dict"]
    tlcli.train(resume=str(run / "last.pt"), epochs=2, progress=False)
    after = load_checkpoint(run / "last.pt")["state_dict"]
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert {"head.weight", "head_dist.weight"} <= changed
    assert all(name.startswith(("head.", "head_dist.")) for name in changed)


def _cached(run_cli, pattern: str) -> dict[str, bool | None]:
    result = run_cli("models", pattern, "--json")
    assert result.code == 0, result.stderr
    return {info["name"]: info["cached"] for info in result.json()}


def test_models_shows_whether_torchvision_weights_are_cached(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert _cached(run_cli, "squeezenet*") == {"squeezenet1_0": False, "squeezenet1_1": False}
    assert _cached(run_cli, "mlp") == {"mlp": None}
    place_torchvision_weights("squeezenet1_1")
    assert _cached(run_cli, "squeezenet*") == {"squeezenet1_0": False, "squeezenet1_1": True}
    table = run_cli("models", "squeezenet*").stdout
    assert "cached" in table
    assert [line.split()[-2] for line in table.splitlines() if "squeezenet" in line] == ["no", "yes"]


def test_models_shows_whether_timm_weights_are_in_the_hugging_face_cache(run_cli):
    pytest.importorskip("timm")
    assert _cached(run_cli, "timm:test_resnet") == {"timm:test_resnet": False}
    folder, _ = place_timm_weights("timm/test_resnet.r160_in1k", "test_resnet")
    try:
        assert _cached(run_cli, "timm:test_resnet") == {"timm:test_resnet": True}
    finally:
        shutil.rmtree(folder)


def test_models_counts_one_architecture_in_the_singular(run_cli):
    pytest.importorskip("timm")
    assert run_cli("models", "timm:resnet18").stderr.strip().splitlines()[-1] == "1 architecture"
    assert run_cli("models", "squeezenet*").stderr.strip().splitlines()[-1] == "2 architectures"

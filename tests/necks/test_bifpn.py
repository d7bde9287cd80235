"""BiFPN: node graphs against effdet's configs, fusion against closed forms, resampling against timm."""

import pytest
import torch
from effdet.config import get_fpn_config
from timm.layers import create_pool2d

from objdet.errors import ConfigError
from objdet.necks.bifpn import BiFPN, Fusion, FusionNode, bifpn_graph, max_pool, panet_graph, topdown_graph, with_fusion

EFFDET_FUSION = {"fastattn": "fast", "attn": "softmax", "sum": "sum"}


def _effdet_nodes(name, min_level, max_level):
    return [FusionNode(n["feat_level"], tuple(n["inputs_offsets"]), EFFDET_FUSION[n["weight_method"]])
            for n in get_fpn_config(name, min_level=min_level, max_level=max_level).nodes]


@pytest.mark.parametrize("levels", [(3, 7), (2, 6), (3, 5)])
@pytest.mark.parametrize("fusion, effdet_name", [("fast", "bifpn_fa"), ("softmax", "bifpn_attn"), ("sum", "bifpn_sum")])
def test_bifpn_graph_is_effdets(levels, fusion, effdet_name):
    assert bifpn_graph(*levels, fusion=fusion) == _effdet_nodes(effdet_name, *levels)


def test_panet_graph_is_effdets():
    assert panet_graph(3, 7, "fast") == _effdet_nodes("pan_fa", 3, 7)


def test_topdown_graph_is_one_top_down_pass():
    nodes = topdown_graph(3, 7)
    assert [n.level for n in nodes] == [7, 6, 5, 4, 3]
    # each finer node takes its own level's input and the node just above it
    for i, node in enumerate(nodes[1:]):
        assert node.inputs == (node.level - 3, 5 + i)


def test_with_fusion_changes_only_fusion():
    nodes = with_fusion(bifpn_graph(), "sum")
    assert [n.fusion for n in nodes] == ["sum"] * len(nodes)
    assert [(n.level, n.inputs) for n in nodes] == [(n.level, n.inputs) for n in bifpn_graph()]


def test_fusion_closed_forms():
    torch.manual_seed(0)
    xs = [torch.randn(2, 3, 4, 4) for _ in range(3)]
    w = torch.tensor([0.7, -0.2, 1.5])
    fast = Fusion(3, "fast")
    fast.weight.data.copy_(w)
    relu = w.clamp(min=0)
    expected = sum(x * r for x, r in zip(xs, relu)) / (relu.sum() + 1e-4)
    torch.testing.assert_close(fast(xs), expected)
    soft = Fusion(3, "softmax")
    soft.weight.data.copy_(w)
    e = w.exp() / w.exp().sum()
    torch.testing.assert_close(soft(xs), sum(x * s for x, s in zip(xs, e)))
    plain = Fusion(3, "sum")
    assert plain.weight is None
    torch.testing.assert_close(plain(xs), xs[0] + xs[1] + xs[2])


def test_unknown_fusion_is_config_error():
    with pytest.raises(ConfigError, match="fusion"):
        Fusion(2, "mean")


@pytest.mark.parametrize("size", [(8, 8), (7, 9), (5, 6), (64, 64), (16, 17), (2, 2)])
@pytest.mark.parametrize("kernel,stride,same", [(3, 2, True), (3, 2, False), (5, 4, True)])
def test_max_pool_matches_timm(size, same, kernel, stride):
    x = torch.randn(1, 2, *size).contiguous(memory_format=torch.channels_last)
    ref = create_pool2d("max", kernel_size=kernel, stride=stride, padding="same" if same else "")
    torch.testing.assert_close(max_pool(x, kernel, stride, same), ref(x), rtol=0, atol=0)


@pytest.mark.parametrize("graph", ["bifpn", "panet", "fpn"])
def test_bifpn_shapes_on_odd_sizes(graph):
    graphs = {"bifpn": bifpn_graph(), "panet": panet_graph(), "fpn": topdown_graph()}
    neck = BiFPN({"C3": 8, "C4": 12, "C5": 16}, channels=16, num_layers=2, graph=graphs[graph]).eval()
    feats = {"C3": torch.randn(1, 8, 13, 10), "C4": torch.randn(1, 12, 7, 5), "C5": torch.randn(1, 16, 4, 3)}
    out = neck(feats)
    assert list(out) == ["P3", "P4", "P5", "P6", "P7"]
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(13, 10), (7, 5), (4, 3), (2, 2), (1, 1)]
    assert all(v.shape[1] == 16 for v in out.values())


def test_each_node_input_has_its_own_lateral_conv():
    # in the first layer, C4 feeds two nodes (top-down and bottom-up): two separate 1x1 convs as effdet
    neck = BiFPN({"C3": 8, "C4": 12, "C5": 16}, channels=16, num_layers=1)
    convs = [r.conv for cell in neck.layers[0].cells for r, i in zip(cell.resample, cell.inputs)
             if i == 1 and r.conv is not None]
    assert len(convs) == 2 and convs[0] is not convs[1]

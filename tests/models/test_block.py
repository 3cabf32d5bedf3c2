"""MobileMamba block: the documented double identity, drop path."""
import torch

from mmmobilemamba.models import MobileMamba, MobileMambaBlock


def test_fresh_block_returns_exactly_twice_the_input():
    block = MobileMambaBlock(144, 7, 0.8, 0.2)
    x = torch.randn(2, 144, 6, 5)
    assert torch.equal(block.train()(x), 2 * x)
    assert torch.equal(block.eval()(x), 2 * x)


def test_double_identity_survives_backbone_init_weights():
    """init_cfg=None must not reset the zero-initialised BNs."""
    model = MobileMamba('T2', out_indices=(0, 1))
    model.init_weights()
    model.eval()
    stem, stage1 = model(torch.randn(1, 3, 64, 64))
    assert torch.equal(stage1, 2 * stem)


def test_zero_init_bns():
    block = MobileMambaBlock(64, 5, 0.7, 0.2)
    for bn in (block.dw1.bn, block.dw2.bn, block.ffn1.pw2.bn,
               block.ffn2.pw2.bn, block.mrffi.proj.bn):
        assert torch.all(bn.weight == 0)
    assert torch.all(block.ffn1.pw1.bn.weight == 1)


def test_drop_path_drops_the_whole_inner_residual():
    torch.manual_seed(0)
    block = MobileMambaBlock(64, 5, 0.7, 0.2, drop_path=0.5).train()
    x = torch.randn(32, 64, 4, 4)
    out = block(x)
    # a fresh block: y = x, so each sample is x (dropped) or 3x (kept, /0.5)
    dropped = torch.isclose(out, x).flatten(1).all(1)
    kept = torch.isclose(out, 3 * x).flatten(1).all(1)
    assert torch.all(dropped | kept) and dropped.any() and kept.any()

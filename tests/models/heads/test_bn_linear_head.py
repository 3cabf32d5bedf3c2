"""BNLinearClsHead: an mmpretrain ClsHead with a fusable BN1d + Linear."""
import pytest
import torch

pytest.importorskip('mmpretrain')
from mmpretrain.structures import DataSample  # noqa: E402

from mmmobilemamba.models.heads.bn_linear_head import \
    BNLinearClsHead  # noqa: E402
from ...helpers import randomize_norms, rel_err  # noqa: E402


def test_keys_and_init():
    head = BNLinearClsHead(num_classes=10, in_channels=32)
    assert sorted(head.state_dict()) == [
        'bn.bias', 'bn.num_batches_tracked', 'bn.running_mean',
        'bn.running_var', 'bn.weight', 'fc.bias', 'fc.weight'
    ]
    assert torch.all(head.fc.bias == 0)
    assert 0.01 < head.fc.weight.std() < 0.03
    fused = BNLinearClsHead(num_classes=10, in_channels=32, deploy=True)
    assert sorted(fused.state_dict()) == ['fc.bias', 'fc.weight']


def test_fused_head_is_equivalent():
    from mmmobilemamba.deploy import convert
    head = randomize_norms(BNLinearClsHead(10, 32)).eval()
    x = (torch.randn(4, 32), )
    ref = head(x)
    fused = convert(convert(head, 'fused'), 'fused')  # folded once
    assert rel_err(fused(x), ref) < 1e-6
    loaded = BNLinearClsHead(10, 32, deploy=True)
    loaded.load_state_dict(fused.state_dict())
    assert rel_err(loaded(x), ref) < 1e-6


def test_loss_and_predict_as_a_cls_head():
    head = BNLinearClsHead(5, 16, topk=(1, ))
    feats = (torch.randn(3, 16), )
    samples = [DataSample().set_gt_label(i) for i in (0, 3, 4)]
    losses = head.loss(feats, samples)
    assert losses['loss'].ndim == 0 and losses['loss'] > 0
    preds = head.eval().predict(feats)
    assert preds[0].pred_score.shape == (5, )


def test_bad_arguments_and_inputs_raise():
    with pytest.raises(ValueError, match='num_classes=0'):
        BNLinearClsHead(0, 16)
    with pytest.raises(ValueError, match='in_channels=-1'):
        BNLinearClsHead(5, -1)
    with pytest.raises(ValueError, match='pooled \\(B, 16\\) features, got '
                       '\\(2, 16, 3, 3\\)'):
        BNLinearClsHead(5, 16)((torch.randn(2, 16, 3, 3), ))

"""DeconvFPN: levels, strides and channels, the transposed-conv count, the
extra levels, and the errors for bad arguments."""
import pytest
import torch

from mmmobilemamba.models.necks import DeconvFPN

B1_CHANNELS = (200, 376, 448)


def _inputs(h=256, w=320, channels=B1_CHANNELS, strides=(16, 32, 64)):
    return [torch.randn(2, c, h // s, w // s)
            for c, s in zip(channels, strides)]


def _strides(outs, h=256):
    return [h // o.shape[2] for o in outs]


def test_mask_rcnn_setting_gives_strides_4_to_64():
    neck = DeconvFPN(B1_CHANNELS, 256, num_outs=5, num_deconvs=2)
    neck.init_weights()
    outs = neck(_inputs())
    assert len(outs) == 5
    assert _strides(outs) == [4, 8, 16, 32, 64]
    assert all(o.shape[:2] == (2, 256) for o in outs)
    assert [o.shape[3] for o in outs] == [80, 40, 20, 10, 5]


def test_retinanet_setting_gives_strides_8_to_128_from_the_input():
    neck = DeconvFPN(B1_CHANNELS, 256, num_outs=5, num_deconvs=1,
                     add_extra_convs='on_input')
    outs = neck(_inputs())
    assert _strides(outs) == [8, 16, 32, 64, 128]
    # the extra level is computed from the 448-channel backbone map
    assert neck.extra_convs[0].in_channels == 448


@pytest.mark.parametrize('num_deconvs', [0, 1, 2, 3])
def test_deconv_count_sets_the_finest_stride(num_deconvs):
    neck = DeconvFPN(B1_CHANNELS, 32, num_outs=3 + num_deconvs,
                     num_deconvs=num_deconvs)
    outs = neck(_inputs())
    assert _strides(outs) == [16 // 2**k for k in range(num_deconvs, 0, -1)
                              ] + [16, 32, 64]
    assert len(neck.deconvs) == num_deconvs
    assert all(isinstance(d, torch.nn.ConvTranspose2d)
               and d.kernel_size == (2, 2) and d.stride == (2, 2)
               for d in neck.deconvs)


def test_deconvs_chain_from_the_fused_stride16_level():
    """The first transposed conv sees lateral_16 + upsampled coarser levels
    (the top-down result), not the raw stride-16 lateral."""
    neck = DeconvFPN(B1_CHANNELS, 8, num_outs=4, num_deconvs=1)
    seen = {}
    neck.deconvs[0].register_forward_hook(
        lambda m, inp, out: seen.setdefault('in', inp[0]))
    inputs = _inputs()
    neck(inputs)
    lat = [c(x) for c, x in zip(neck.lateral_convs, inputs)]
    fused32 = lat[1] + torch.nn.functional.interpolate(
        lat[2], size=lat[1].shape[2:])
    fused16 = lat[0] + torch.nn.functional.interpolate(
        fused32, size=lat[0].shape[2:])
    torch.testing.assert_close(seen['in'], fused16)


def test_no_norm_or_activation_in_the_upsampling_path():
    neck = DeconvFPN(B1_CHANNELS, 16, num_outs=5, num_deconvs=2)
    kinds = {type(m) for m in neck.modules()} - {DeconvFPN,
                                                   torch.nn.ModuleList}
    assert kinds == {torch.nn.Conv2d, torch.nn.ConvTranspose2d}


def test_extra_levels_by_pooling_and_chained_convs():
    pooled = DeconvFPN(B1_CHANNELS, 16, num_outs=6, num_deconvs=1)
    assert _strides(pooled(_inputs(512, 512)), 512) == [8, 16, 32, 64, 128,
                                                        256]
    convs = DeconvFPN(B1_CHANNELS, 16, num_outs=6, num_deconvs=0,
                      add_extra_convs='on_output',
                      relu_before_extra_convs=True)
    assert _strides(convs(_inputs(512, 512)), 512) == [16, 32, 64, 128, 256,
                                                       512]
    assert len(convs.extra_convs) == 3


def test_odd_sizes_follow_the_input_maps():
    neck = DeconvFPN(B1_CHANNELS, 8, num_outs=5, num_deconvs=2)
    inputs = [torch.randn(1, c, h, w) for c, (h, w) in
              zip(B1_CHANNELS, [(13, 21), (7, 11), (4, 6)])]
    outs = neck(inputs)
    assert [tuple(o.shape[2:]) for o in outs] == [(52, 84), (26, 42),
                                                  (13, 21), (7, 11), (4, 6)]


def test_backward_reaches_every_parameter():
    neck = DeconvFPN(B1_CHANNELS, 8, num_outs=5, num_deconvs=1,
                     add_extra_convs=True)
    sum(o.sum() for o in neck(_inputs())).backward()
    assert all(p.grad is not None for p in neck.parameters())


@pytest.mark.parametrize('kwargs, message', [
    (dict(in_channels=[]), 'in_channels'),
    (dict(in_channels=[200, -1]), 'in_channels'),
    (dict(out_channels=0), 'out_channels'),
    (dict(num_deconvs=-1), 'num_deconvs'),
    (dict(num_outs=4), 'num_outs=4'),
    (dict(add_extra_convs='on_nothing'), 'on_nothing'),
])
def test_bad_arguments_raise(kwargs, message):
    args = dict(in_channels=B1_CHANNELS, out_channels=16, num_outs=5,
                num_deconvs=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        DeconvFPN(**args)


def test_wrong_inputs_raise():
    neck = DeconvFPN(B1_CHANNELS, 16, num_outs=5)
    with pytest.raises(ValueError, match='expects 3 input levels'):
        neck(_inputs()[:2])
    with pytest.raises(ValueError, match='input level 1'):
        neck(_inputs(channels=(200, 300, 448)))
